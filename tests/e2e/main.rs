//! End-to-end tests: the real `stdioproxy` daemon, real `stdioproxy-shim`
//! clients and real child processes, in temp dirs.

mod support;

mod clientfit;
mod clientfit_interop;
mod clients;
mod core;
mod era;
mod era_interop;
mod hostile;
mod instances;
mod interop;
mod limits;
mod migrate;
mod newuser;
mod quickstart;
mod reload;
mod resume;
mod security;
mod supervision;
mod surface;
mod systemd;
