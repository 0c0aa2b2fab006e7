#!/usr/bin/env bash
# Builds wedge's container image as an OCI image layout, without a Docker daemon or any image
# tool: the root filesystem is staged in a temporary directory, packed into one layer with
# GNU tar (sorted, fixed times and owners, so the same inputs give the same digests), and the
# config, manifest, index.json and oci-layout are written here.
#
#   deploy/image/build.sh [--wedge PATH] [--out DIR] [--tag TAG]
#
#   --wedge PATH   the wedge binary [default: target/release/wedge, else target/debug/wedge]
#   --out DIR      where the layout goes [default: target/image]; DIR.tar is the same
#                  layout as one archive (`ctr images import`, `skopeo copy oci-archive:`)
#   --tag TAG      the tag recorded in index.json [default: the binary's version]
#
# What is in it ("distroless"-like, FROM scratch otherwise):
#   /usr/bin/wedge                       stripped of debug info
#   the shared libraries ldd lists       glibc (libc, libm), libgcc_s and the dynamic loader,
#                                        copied from this machine at their paths: wedge is a
#                                        glibc build (docs/kubernetes.md says why not musl)
#   /etc/ssl/certs/ca-certificates.crt   Debian's CA bundle, for registries and outbound HTTPS
#   /etc/passwd, /etc/group              the user `wedge` (65532), which the image runs as
#   /etc/nsswitch.conf                   hosts from /etc/hosts, then DNS
#   /data (owned by 65532), /tmp (1777)  the data volume's mount point, a scratch directory
#
# The image runs `wedge serve --listen 0.0.0.0:8080 --data /data`; give it an app manifest
# with `--app` (e.g. from a ConfigMap, deploy/kubernetes/) or deploy functions over the API.
# Prints the layout's directory and the manifest's digest.
set -euo pipefail
cd "$(dirname "$0")/../.."

wedge=""
out="target/image"
tag=""
while [ "$#" -gt 0 ]; do
    case "$1" in
    --wedge) wedge="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "usage: deploy/image/build.sh [--wedge PATH] [--out DIR] [--tag TAG]" >&2; exit 2 ;;
    esac
done
if [ -z "$wedge" ]; then
    for candidate in target/release/wedge target/debug/wedge; do
        [ -x "$candidate" ] && { wedge="$candidate"; break; }
    done
fi
[ -n "$wedge" ] && [ -x "$wedge" ] || {
    echo "build.sh: no wedge binary: build one (cargo build --release -p wedge) or pass --wedge PATH" >&2
    exit 1
}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$CA_BUNDLE" ]; then
    echo "build.sh: apt-get install ca-certificates" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >&2
fi
version="$("$wedge" --version | awk '{print $2}')"
tag="${tag:-$version}"
case "$(uname -m)" in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
*) arch="$(uname -m)" ;;
esac

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/data" "$root/tmp" "$root/home/wedge"

# The binary, without its debug info (the dev profile keeps line tables: ~100 MB of them).
cp "$wedge" "$root/usr/bin/wedge"
strip --strip-debug "$root/usr/bin/wedge"

# Its shared libraries and the dynamic loader, at the paths the binary asks for.
copy_with_path() {
    local path="$1"
    mkdir -p "$root$(dirname "$path")"
    cp -L "$path" "$root$path"
}
while read -r line; do
    case "$line" in
    *"=> not found"*) echo "build.sh: $wedge needs a library this machine lacks: $line" >&2; exit 1 ;;
    *"=> /"*) copy_with_path "$(awk '{print $3}' <<<"$line")" ;;
    /*) copy_with_path "$(awk '{print $1}' <<<"$line")" ;;
    esac
done < <(ldd "$wedge")

cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
wedge:x:65532:65532:wedge:/home/wedge:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
wedge:x:65532:
EOF
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"

# One layer, reproducible: sorted entries, the epoch as every time, root as every owner but
# the wedge user's directories, appended with their owner.
layer_tar="$stage/layer.tar"
common=(--sort=name --mtime=@0 --numeric-owner --format=posix
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
(cd "$root" && tar --create --file "$layer_tar" "${common[@]}" --owner=0 --group=0 \
    --exclude=./data --exclude=./home/wedge .)
(cd "$root" && tar --append --file "$layer_tar" "${common[@]}" --owner=65532 --group=65532 \
    ./data ./home/wedge)
gzip -n <"$layer_tar" >"$stage/layer.tar.gz"

sha() { sha256sum "$1" | awk '{print $1}'; }
size() { stat -c %s "$1"; }
diff_id="$(sha "$layer_tar")"
layer_digest="$(sha "$stage/layer.tar.gz")"

rm -rf "$out" "$out.tar"
mkdir -p "$out/blobs/sha256"
cp "$stage/layer.tar.gz" "$out/blobs/sha256/$layer_digest"

# The image config: what the runtime runs, as whom, with which environment.
config="$stage/config.json"
cat >"$config" <<EOF
{"architecture":"$arch","os":"linux","created":"1970-01-01T00:00:00Z","config":{"User":"65532:65532","Env":["PATH=/usr/bin","HOME=/home/wedge","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Entrypoint":["/usr/bin/wedge"],"Cmd":["serve","--listen","0.0.0.0:8080","--data","/data"],"WorkingDir":"/data","ExposedPorts":{"8080/tcp":{}},"Volumes":{"/data":{}},"StopSignal":"SIGTERM","Labels":{"org.opencontainers.image.title":"wedge","org.opencontainers.image.version":"$version"}},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"deploy/image/build.sh"}]}
EOF
config_digest="$(sha "$config")"
cp "$config" "$out/blobs/sha256/$config_digest"

manifest="$stage/manifest.json"
cat >"$manifest" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$(size "$config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$(size "$stage/layer.tar.gz")}],"annotations":{"org.opencontainers.image.title":"wedge","org.opencontainers.image.version":"$version"}}
EOF
manifest_digest="$(sha "$manifest")"
cp "$manifest" "$out/blobs/sha256/$manifest_digest"

cat >"$out/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$(size "$manifest"),"platform":{"architecture":"$arch","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"$tag"}}]}
EOF
echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
(cd "$out" && tar --create --file "../$(basename "$out").tar" "${common[@]}" --owner=0 --group=0 \
    oci-layout index.json blobs)

echo "build.sh: $out (and $out.tar): wedge $version, layer $(du -h "$stage/layer.tar.gz" | cut -f1) compressed" >&2
echo "$out sha256:$manifest_digest"
