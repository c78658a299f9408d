fn main() { gpl_helper::hello(); }
