//! What the agent adds to a kernel record: what is known about each live process
//! ([`process_table`]), the paths of directories opened ([`directories`]) and what a path in a call
//! means
//! ([`paths`]), names of addresses
//! from DNS answers ([`dns`]), terminal and user names ([`tty`], [`users`]), container context
//! ([`container`]) and the Kubernetes metadata of this node's pods ([`kubernetes`]).

pub mod container;
pub mod directories;
pub mod dns;
pub mod kubernetes;
pub mod paths;
pub mod process_table;
pub mod tty;
pub mod users;
