"""Hooks of the schemathesis run in .ci/fuzz-api.

A client sends a fresh Idempotency-Key with each new request and the same key only when it
retries the same request: reusing a key with another body is a documented 422
(`idempotency_key_reused`). Generated cases keep their key's shape (a key the document allows
stays allowed, an invalid one stays invalid) but a valid key is made unique per call.
"""
import re
import uuid

import schemathesis

VALID = re.compile(r"^[ -~]{1,255}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            key = headers[name]
            if isinstance(key, str) and VALID.match(key):
                headers[name] = uuid.uuid4().hex
