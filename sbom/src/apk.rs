//! The apk database, `lib/apk/db/installed`: one block of `X:value` lines per installed
//! package, blocks separated by a blank line (Alpine's "Apk spec": `P:` name, `V:`
//! version, `A:` architecture, `L:` license, `o:` origin, `m:` maintainer; file lines
//! `F:`/`R:`/`Z:`… are skipped).

use strata_oci::Digest;

use crate::package::{Package, PackageKind};

#[derive(Default)]
struct Block<'a> {
    name: Option<&'a str>,
    version: Option<&'a str>,
    arch: Option<&'a str>,
    license: Option<&'a str>,
    origin: Option<&'a str>,
    maintainer: Option<&'a str>,
}

impl Block<'_> {
    fn finish(self, layer: &Digest, out: &mut Vec<Package>) {
        let (Some(name), Some(version)) = (self.name, self.version) else {
            return;
        };
        let owned = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        out.push(Package {
            kind: PackageKind::Apk,
            name: name.to_string(),
            version: version.to_string(),
            epoch: None,
            arch: owned(self.arch),
            license: owned(self.license),
            source: owned(self.origin),
            supplier: owned(self.maintainer),
            layer: layer.clone(),
        });
    }
}

/// The packages of an apk `installed` database.
pub(crate) fn parse_installed(text: &str, layer: &Digest) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut block = Block::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            std::mem::take(&mut block).finish(layer, &mut packages);
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "P" => block.name = Some(value).filter(|v| !v.is_empty()),
            "V" => block.version = Some(value).filter(|v| !v.is_empty()),
            "A" => block.arch = Some(value),
            "L" => block.license = Some(value),
            "o" => block.origin = Some(value),
            "m" => block.maintainer = Some(value),
            _ => {}
        }
    }
    block.finish(layer, &mut packages);
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_packages() {
        let text = "\
C:Q1abc=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407765
I:663552
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705307467
c:c3f4d4e8
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1xyz=

P:busybox
V:1.36.1-r15
A:x86_64
L:GPL-2.0-only
o:busybox
";
        let layer = Digest::sha256_of(b"l");
        let packages = parse_installed(text, &layer);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "musl");
        assert_eq!(packages[0].version, "1.2.4_git20230717-r4");
        assert_eq!(packages[0].arch.as_deref(), Some("x86_64"));
        assert_eq!(packages[0].license.as_deref(), Some("MIT"));
        assert_eq!(
            packages[0].supplier.as_deref(),
            Some("Timo Teräs <timo.teras@iki.fi>")
        );
        assert_eq!(packages[1].license.as_deref(), Some("GPL-2.0-only"));
        assert_eq!(packages[1].supplier, None);
    }
}
