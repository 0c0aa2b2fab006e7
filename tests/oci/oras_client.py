#!/usr/bin/env python3
"""An independent OCI client for tests/oci.rs: oras-py (PyPI `oras`), over plain HTTP to a
registry on loopback. It checks that what `wedge push` writes is a standard artifact, and
pushes artifacts that `wedge pull` must read.

    oras_client.py push REF CONFIG:MEDIA_TYPE FILE[:MEDIA_TYPE]...   push; prints the manifest digest
    oras_client.py pull REF OUTDIR                                  pull every layer by its title
    oras_client.py manifest REF                                     print the manifest (JSON)
    oras_client.py blob REF DIGEST                                  print a blob's bytes
"""
import json
import os
import sys

import oras.provider


def registry(ref):
    return oras.provider.Registry(hostname=ref.split("/", 1)[0], insecure=True)


def main(argv):
    command, ref = argv[1], argv[2]
    client = registry(ref)
    if command == "push":
        config, files = argv[3], argv[4:]
        response = client.push(
            target=ref,
            files=files,
            manifest_config=config,
            disable_path_validation=True,
            quiet=True,
        )
        print(response.headers.get("Docker-Content-Digest", ""))
    elif command == "pull":
        for path in client.pull(target=ref, outdir=argv[3]):
            print(os.path.basename(path))
    elif command == "manifest":
        print(json.dumps(client.get_manifest(ref)))
    elif command == "blob":
        container = client.get_container(ref)
        response = client.get_blob(container, argv[3])
        response.raise_for_status()
        sys.stdout.buffer.write(response.content)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
