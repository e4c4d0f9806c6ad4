// Package bench holds end-to-end benchmarks of tli and the scripts that run
// peers (PyTorch, gonum) on the same shapes in the same run, so that figures
// are reported as ratios: forward_peer.py and tlistep_peer.py (called by the
// Forward and TLIStep benchmarks), gemm_peer.py (PyTorch on the kernels'
// GEMM shapes) and gemm_table.py (the GEMM ratio table: every kernel path
// against PyTorch, and the generic path against gonum).
package bench
