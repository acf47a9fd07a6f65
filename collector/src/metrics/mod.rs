//! `serve --metrics-listen ADDR`: the collector's figures as Prometheus text on `GET /metrics`
//! (served by [`crate::endpoint`]): the live instruments of [`figures`], what the store holds
//! and owes ([`store_figures`]) and `kestrel_collector_build_info`. Encoded by
//! `prometheus-client`.

pub mod figures;
pub mod store_figures;

use std::path::Path;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use store_figures::{fold_reasons, GAP_REASONS};

use crate::store::{Access, Store, StoreError};
use store_figures::StoreFigures;

/// Content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The Prometheus text exposition (version 0.0.4) of the collector's figures now, with the
/// store in `data` read through a read-only connection. Blocking.
pub fn render(data: &Path) -> Result<String, StoreError> {
    let stats = Store::open_existing(data, Access::ReadOnly)?.stats()?;
    let mut registry = Registry::default();
    registry.register(
        "kestrel_collector_build",
        "The collector's version (value 1)",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    figures::figures().register(&mut registry);
    registry.register_collector(Box::new(StoreFigures(stats)));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).expect("writing to a String");
    Ok(text)
}
