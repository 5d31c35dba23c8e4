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
    builder.compile_fds_with_config(fds.clone(), config)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut json = pbjson_build::Builder::new();
    json.register_descriptors(&descriptor_bytes)?
        .out_dir(&out_dir)
        .preserve_proto_field_names();
    for (proto, rust) in EXTERN {
        json.extern_path(*proto, *rust);
    }
    json.build(&[".flow", ".observer", ".peer", ".relay", ".webb.v1"])?;

    patch_generated_json(&out_dir)?;
    print_oneofs_in_declared_order(&out_dir, &fds)
}

/// Go's protojson prints fields in the order the .proto declares them, a oneof in its place;
/// pbjson prints every oneof last. `hubble observe -o json` lines start with `"flow"` (declared
/// first in GetFlowsResponse), so a oneof declared before the other fields is moved to the front.
/// A oneof between other fields has no such fix and fails the build, so it cannot go unnoticed.
fn print_oneofs_in_declared_order(
    out_dir: &std::path::Path,
    fds: &prost_types::FileDescriptorSet,
) -> Result<(), Box<dyn std::error::Error>> {
    fn visit(
        package: &str,
        message: &prost_types::DescriptorProto,
        found: &mut Vec<(String, String, String)>,
    ) -> Result<(), String> {
        let is_real_oneof = |f: &prost_types::FieldDescriptorProto| {
            f.oneof_index.is_some() && !f.proto3_optional.unwrap_or(false)
        };
        let fields = &message.field;
        if let Some(first_oneof) = fields.iter().position(is_real_oneof) {
            let last_plain = fields.iter().rposition(|f| !is_real_oneof(f));
            if last_plain.is_some_and(|plain| plain > first_oneof) {
                let leading = fields.iter().take_while(|f| is_real_oneof(f)).count();
                if fields[..leading]
                    .iter()
                    .any(|f| f.oneof_index != fields[0].oneof_index)
                    || fields[leading..].iter().any(is_real_oneof)
                {
                    return Err(format!(
                        "{package}.{}: a oneof between other fields: protojson field order needs a fix in build.rs",
                        message.name()
                    ));
                }
                let oneof = message.oneof_decl[fields[0].oneof_index() as usize].name();
                found.push((
                    package.to_owned(),
                    message.name().to_owned(),
                    oneof.to_owned(),
                ));
            }
        }
        for nested in &message.nested_type {
            visit(package, nested, found)?;
        }
        Ok(())
    }
    let mut leading_oneofs = Vec::new();
    for file in &fds.file {
        for message in &file.message_type {
            visit(file.package(), message, &mut leading_oneofs)?;
        }
    }
    for (package, message, oneof) in leading_oneofs {
        let path = out_dir.join(format!("{package}.serde.rs"));
        let code = std::fs::read_to_string(&path)?;
        let impl_start = code
            .find(&format!("impl serde::Serialize for {message} {{"))
            .ok_or_else(|| format!("{}: no Serialize for {message}", path.display()))?;
        let open_struct = impl_start
            + code[impl_start..]
                .find("let mut struct_ser = ")
                .ok_or("no struct_ser")?;
        let insert_at = open_struct + code[open_struct..].find('\n').ok_or("no newline")? + 1;
        let block_needle = format!("        if let Some(v) = self.{oneof}.as_ref() {{");
        let block_start = insert_at
            + code[insert_at..]
                .find(&block_needle)
                .ok_or_else(|| format!("{message}: no printer for oneof {oneof}"))?;
        // The block ends at the brace that closes its `if`, at the same indentation.
        let block_end = block_start
            + code[block_start..]
                .find("\n        }\n")
                .ok_or_else(|| format!("{message}: oneof {oneof} printer has no end"))?
            + "\n        }\n".len();
        let mut patched = String::with_capacity(code.len());
        patched.push_str(&code[..insert_at]);
        patched.push_str(&code[block_start..block_end]);
        patched.push_str(&code[insert_at..block_start]);
        patched.push_str(&code[block_end..]);
        std::fs::write(&path, patched)?;
    }
    Ok(())
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
