//! Volley operator: reconciles `PushCluster` resources into gateway Deployments, scales them
//! from the gateways' stats stream and keeps connections balanced.
//!
//! Pure parts ([`gateway_config`], [`build`], [`scaling`], [`conditions`]) are plain functions;
//! [`controller`] is the thin IO shell around them.

pub mod balancer;
pub mod build;
pub mod conditions;
pub mod controller;
pub mod crdgen;
pub mod gateway_config;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod rs_oracle;
pub mod scaledown;
pub mod scaling;
pub mod stats;
pub mod telemetry;
#[cfg(test)]
mod test_ports;
