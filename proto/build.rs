//! Compiles the .proto files under `proto/api` with protox (pure Rust, no system `protoc`),
//! generates prost messages + tonic client/server with tonic-prost-build, and protojson serde
//! impls with pbjson-build. Well-known types come from `pbjson_types`, except Timestamp, Any and
//! FieldMask, whose protojson forms pbjson does not produce the way Go does (see `src/wkt.rs`).

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/api/v1/flow/flow.proto",
    "proto/api/v1/observer/observer.proto",
    "proto/api/v1/peer/peer.proto",
    "proto/api/v1/relay/relay.proto",
    "proto/api/webb/v1/extras.proto",
];

// Hubble's files import each other as "flow/flow.proto", so api/v1 is an include root.
const INCLUDES: &[&str] = &["proto/api/v1", "proto/api"];

const EXTERN: &[(&str, &str)] = &[
    (".google.protobuf.Timestamp", "crate::wkt::Timestamp"),
    (".google.protobuf.Any", "crate::wkt::Any"),
    (".google.protobuf.FieldMask", "crate::wkt::FieldMask"),
    (".google.protobuf", "::pbjson_types"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, INCLUDES)?;
    let descriptor_bytes = prost::Message::encode_to_vec(&fds);

    let mut builder = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_well_known_types(true);
    for (proto, rust) in EXTERN {
        builder = builder.extern_path(*proto, *rust);
    }
    // Type names (prost::Name) let Any pack/unpack Webb's messages under their protojson URL.
    let mut config = prost_build::Config::new();
    config
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");
    builder.compile_fds_with_config(fds, config)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut json = pbjson_build::Builder::new();
    json.register_descriptors(&descriptor_bytes)?
        .out_dir(&out_dir)
        .preserve_proto_field_names();
    for (proto, rust) in EXTERN {
        json.extern_path(*proto, *rust);
    }
    json.build(&[".flow", ".observer", ".peer", ".relay", ".webb.v1"])?;

    patch_generated_json(&out_dir)
}

/// Two fixes to pbjson's output, so JSON behaves like Go's protojson:
/// - numbers are read by src/json_number.rs: pbjson's reader goes through an untagged enum
///   that builds a throw-away error for every plain JSON number (a tenth of parse time);
/// - enum values this build does not know print as numbers and numbers of any value are read
///   (src/json_enum.rs), instead of failing the whole message.
fn patch_generated_json(out_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let unknown_enum = regex::Regex::new(
        r#"((?:\w+::)*\w+)::try_from\(([^()]+)\)\s*\.map_err\(\|_\| serde::ser::Error::custom\(format!\("Invalid variant \{\}", [^()]+\)\)\)"#,
    )?;
    let enum_field = regex::Regex::new(r"map_\.next_value::<((?:\w+::)*\w+)>\(\)\? as i32")?;
    let enum_list = regex::Regex::new(
        r"map_\.next_value::<Vec<((?:\w+::)*\w+)>>\(\)\?\.into_iter\(\)\.map\(\|x\| x as i32\)\.collect\(\)",
    )?;
    for entry in std::fs::read_dir(out_dir)? {
        let path = entry?.path();
        if !path.to_string_lossy().ends_with(".serde.rs") {
            continue;
        }
        let code = std::fs::read_to_string(&path)?;
        let code = code.replace(
            "::pbjson::private::NumberDeserialize",
            "crate::json_number::NumberDeserialize",
        );
        let code = unknown_enum.replace_all(
            &code,
            "Ok::<_, S::Error>(crate::json_enum::Open::<$1>::new($2))",
        );
        let code = enum_field.replace_all(
            &code,
            "map_.next_value::<crate::json_enum::OpenDe<$1>>()?.0",
        );
        let code = enum_list.replace_all(
            &code,
            "map_.next_value::<Vec<crate::json_enum::OpenDe<$1>>>()?.into_iter().map(|x| x.0).collect()",
        );
        if code.contains("Invalid variant") || code.contains(" as i32") {
            return Err(format!("{}: an enum printer was left unpatched", path.display()).into());
        }
        std::fs::write(&path, code.as_bytes())?;
    }
    Ok(())
}
