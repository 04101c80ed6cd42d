fn main() {
    println!("azureml-attach");
}
