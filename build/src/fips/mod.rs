//! FIPS evidence: which module a binary carries ([`module`]), what its symbol table shows
//! ([`symbols`]), and what it reports about itself when run ([`evidence`]).

pub mod evidence;
pub mod module;
pub mod symbols;
