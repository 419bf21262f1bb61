use clap::Parser;
use shop::{app::App, config::Config, telemetry};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    telemetry::init(&config);
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => {
            // Said on stderr whatever the log filter, for the operator who started it.
            eprintln!("shop could not start: {err}");
            std::process::exit(1);
        }
    };
    app.run(keel::serve::shutdown_signal()).await;
}
