fn main() {
    cfg_if::cfg_if! {
        if #[cfg(feature = "extra")] {
            helper_opt::run();
        }
    }
}
