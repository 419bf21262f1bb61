use clap::Parser;
use shop::{app::App, config::Config, telemetry};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    telemetry::init(&config);
    let app = App::build(config)
        .await
        .expect("shop could not start: check DATABASE_URL and SHOP_ADDR");
    app.run(shop::app::shutdown_signal()).await;
}
