package vulkan

// The compute shaders are GLSL in shaders/*.comp, compiled to SPIR-V by
// glslc (Debian/Ubuntu: apt-get install glslc; or the Vulkan SDK) with
// `go generate ./vulkan/`; the .spv files are committed and embedded
// (pipeline.go), so building tli needs no shader compiler. TestSPIRVUpToDate
// runs these same lines into a temporary folder and fails when the output
// differs from the committed files. Keep one line per shader and the flags
// fixed: the bytes must not depend on who compiles.

//go:generate glslc --target-env=vulkan1.1 -O -o shaders/add.spv shaders/add.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/attention.spv shaders/attention.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/embed.spv shaders/embed.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/gemm.spv shaders/gemm.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/rmsnorm.spv shaders/rmsnorm.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/rope.spv shaders/rope.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/silu_mul.spv shaders/silu_mul.comp
