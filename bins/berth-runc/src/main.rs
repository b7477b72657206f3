//! `berth-runc`: runc's command line over the berth-runtime library.

fn main() {
    println!("berth-runc");
}
