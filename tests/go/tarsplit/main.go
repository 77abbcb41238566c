// tarsplit-gen: the tar-split JSON stream vbatts/tar-split writes for the tar on
// stdin (asm.NewInputTarStream with storage.NewJSONPacker, as containers/storage's
// zstd:chunked writer packs it), on stdout. The zstd:chunked test compares it with the
// tar-split strata embeds.
package main

import (
	"io"
	"os"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

func main() {
	its, err := asm.NewInputTarStream(os.Stdin, storage.NewJSONPacker(os.Stdout), nil)
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(io.Discard, its); err != nil {
		panic(err)
	}
}
