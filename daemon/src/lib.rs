//! The escalade daemon's services: the durable store, the engine that applies the rules'
//! decisions to it, and the synthetic city generator. The binary (`main.rs`) is the command
//! line over them.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod engine;
pub mod explain;
pub mod generate;
pub mod jobs;
pub mod links;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod photos;
pub mod reload;
pub mod replay;
pub mod scorecards;
pub mod shadow;
pub mod store;
pub mod systemd;
