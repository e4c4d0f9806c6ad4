//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestValidationLayer runs the device, memory, kernel and forward tests
// again in a child process under the Khronos validation layer with
// synchronization validation, and fails on any error it reports (API misuse, missing
// barriers, objects left at vkDestroyDevice). It skips when the layer is
// not installed (Debian/Ubuntu: apt-get install vulkan-validationlayers).
func TestValidationLayer(t *testing.T) {
	if os.Getenv("TLI_VULKAN_CHILD") != "" {
		t.Skip("in a child")
	}
	found := false
	for _, dir := range []string{"/usr/share/vulkan/explicit_layer.d", "/usr/local/share/vulkan/explicit_layer.d", "/etc/vulkan/explicit_layer.d"} {
		if _, err := os.Stat(filepath.Join(dir, "VkLayer_khronos_validation.json")); err == nil {
			found = true
		}
	}
	if !found {
		t.Skip("the Khronos validation layer is not installed (apt-get install vulkan-validationlayers)")
	}
	openContext(t, Options{}) // skips without a device
	settings := filepath.Join(t.TempDir(), "vk_layer_settings.txt")
	if err := os.WriteFile(settings, []byte(`khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG
khronos_validation.report_flags = error,warn
khronos_validation.log_filename = stdout
khronos_validation.enables = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^Test(OpenClose|UploadDownload|Exhaustion|DeferredFree|ManyDispatches|GEMM|SplitBindings|RMSNorm|Elementwise|Rope|Embed|Attention|GEMMNN|GEMMTN|SplitBindingsBackward|RMSNormBackward|SiLUMulBackward|RopeBackward|AttentionBackward|AttentionBackwardFD|MeanPool|L2Norm|LoRA|ForwardMatchesCPU|ForwardStreaming|ForwardContract|StepMatchesCPU|StepContract|EvaluateOnDevice|GenerateOnDevice|StepOutOfMemory|ForwardOnLayer)$", "-test.v")
	cmd.Env = append(os.Environ(), "TLI_VULKAN_CHILD=1", "VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation", "VK_LAYER_SETTINGS_PATH="+settings)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	msgs := regexp.MustCompile(`(?m)^(\S+)\((ERROR|WARN)[^)]*\)`).FindAllStringSubmatch(string(out), -1)
	counts := map[string]int{}
	for _, m := range msgs {
		counts[m[1]+" "+m[2]]++
		if m[2] == "ERROR" {
			t.Errorf("validation error %s", m[1])
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
	for _, name := range []string{"TestGEMM", "TestAttentionBackward", "TestLoRA", "TestForwardMatchesCPU", "TestForwardContract", "TestStepMatchesCPU"} {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Fatalf("the child did not run %s:\n%s", name, out)
		}
	}
	t.Logf("validation layer messages: %v", counts)
}
