//! Writes the `flow_binary` seeds: each `flow_json` seed, protobuf-encoded, so that the binary
//! target starts from real messages. Run after changing the JSON seeds:
//! `cargo run --manifest-path fuzz/Cargo.toml --example write_binary_seeds`.

use std::fs;
use std::path::Path;

use prost::Message;
use webb_proto::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let out = seeds.join("flow_binary");
    fs::create_dir_all(&out)?;
    let mut paths: Vec<_> = fs::read_dir(seeds.join("flow_json"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths {
        let text = fs::read_to_string(&path)?;
        let response = json::response_from_line(text.trim())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.with_extension("bin");
        let target = out.join(name.file_name().ok_or("seed without a file name")?);
        fs::write(&target, response.encode_to_vec())?;
        println!("{}", target.display());
    }
    Ok(())
}
