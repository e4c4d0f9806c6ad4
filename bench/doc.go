// Package bench holds end-to-end benchmarks of tli and the scripts that run peers (PyTorch, gonum) on the same shapes in the same run, so that figures are reported as ratios.
package bench
