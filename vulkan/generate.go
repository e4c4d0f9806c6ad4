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
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/attention_back_kv.spv shaders/attention_back_kv.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/attention_back_q.spv shaders/attention_back_q.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/embed.spv shaders/embed.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/gemm.spv shaders/gemm.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/gemm_kn.spv shaders/gemm_kn.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/l2norm.spv shaders/l2norm.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/l2norm_back.spv shaders/l2norm_back.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/mean_pool.spv shaders/mean_pool.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/mean_pool_back.spv shaders/mean_pool_back.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/mul.spv shaders/mul.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/rmsnorm.spv shaders/rmsnorm.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/rmsnorm_back.spv shaders/rmsnorm_back.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/rope.spv shaders/rope.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/silu_mul.spv shaders/silu_mul.comp
//go:generate glslc --target-env=vulkan1.1 -O -o shaders/silu_mul_back.spv shaders/silu_mul_back.comp
