fn main() {
    build_helper::touch();
}
