//! Regenerates `containerd/src/proto/*.rs` from `containerd/proto/**.proto` with
//! tonic-prost-build, with the settings containerd-client 0.9 used: clients only,
//! proto3 `optional` allowed, `prost::Name` implemented (type names).
//!
//! Run from the workspace root (needs `protoc`, Debian: protobuf-compiler):
//!
//! ```text
//! cargo run --manifest-path containerd/codegen/Cargo.toml
//! ```

use std::path::{Path, PathBuf};

/// The services strata calls, and the `containerd.types` messages they use. The
/// `google.protobuf` ones map onto `prost-types`.
const PROTO_FILES: &[&str] = &[
    "github.com/containerd/containerd/api/types/descriptor.proto",
    "github.com/containerd/containerd/api/types/mount.proto",
    "github.com/containerd/containerd/api/services/content/v1/content.proto",
    "github.com/containerd/containerd/api/services/images/v1/images.proto",
    "github.com/containerd/containerd/api/services/leases/v1/leases.proto",
    "github.com/containerd/containerd/api/services/namespaces/v1/namespace.proto",
    "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("codegen has no parent directory")?
        .to_path_buf();
    let proto_dir = crate_dir.join("proto");
    let out_dir = crate_dir.join("src").join("proto");
    std::fs::create_dir_all(&out_dir)?;
    let files: Vec<PathBuf> = PROTO_FILES.iter().map(|f| proto_dir.join(f)).collect();

    let mut config = tonic_prost_build::Config::new();
    config.protoc_arg("--experimental_allow_proto3_optional");
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out_dir)
        .compile_with_config(config, &files, &[proto_dir])?;

    // containerd's comments indent a line of pseudo-code with a tab, which rustdoc
    // would take for a Rust code block (and run as a doctest); mark it as text.
    for entry in std::fs::read_dir(&out_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && path.file_name() != Some("mod.rs".as_ref())
        {
            let code = std::fs::read_to_string(&path)?;
            let fixed = fix_doc_code_blocks(&code);
            if fixed != code {
                std::fs::write(&path, fixed)?;
            }
        }
    }
    println!("regenerated {}", out_dir.display());
    Ok(())
}

/// Wraps runs of tab-indented doc-comment lines in a ```` ```text ```` fence.
fn fix_doc_code_blocks(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_block = false;
    let mut prefix = String::new();
    for line in code.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let tabbed = trimmed.starts_with("/// \t") || trimmed.starts_with("///\t");
        if tabbed && !in_block {
            out.push_str(&format!("{indent}/// ```text\n"));
            in_block = true;
            prefix = indent.to_string();
        } else if !tabbed && in_block {
            out.push_str(&format!("{prefix}/// ```\n"));
            in_block = false;
        }
        if in_block {
            // prost escapes brackets for Markdown; inside a text block they show as is.
            out.push_str(&line.replace("\\[", "[").replace("\\]", "]"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}
