#!/bin/sh
# Regenerates vulkan/abi_gen.go (Go mirrors of the Vulkan structs) and
# vulkan/abi_layout_test.go (their C layout as computed by gcc), by hand:
#
#   vulkan/testdata/abi/gen.sh [INCLUDE_DIR]
#
# INCLUDE_DIR holds vulkan/vulkan_core.h from KhronosGroup/Vulkan-Headers
# (default /usr/include; the bf16 and cooperative-matrix structs need
# VK_HEADER_VERSION 312 or later). Needs python3 and gcc; the Go code
# itself never uses cgo. TestABILayout then checks every offset.
set -eu
cd "$(dirname "$0")"
inc=${1:-/usr/include}
python3 gen.py "$inc/vulkan/vulkan_core.h" ../../abi_gen.go layout.c
tmp=$(mktemp -d)
gcc -std=c11 -Wall -I"$inc" layout.c -o "$tmp/layout"
"$tmp/layout" > ../../abi_layout_test.go
rm -rf "$tmp"
gofmt -w ../../abi_gen.go ../../abi_layout_test.go
