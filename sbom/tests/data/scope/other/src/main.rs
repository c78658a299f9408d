fn main() { unused_lib::run(); }
