//go:build !vulkan

package vulkan

import (
	"errors"
	"strings"
	"testing"
)

func TestStubSaysHowToBuild(t *testing.T) {
	if Built {
		t.Fatal("Built is true without the vulkan tag")
	}
	ds, err := Devices()
	if ds != nil || !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Devices() = %v, %v; want nil, ErrNotBuilt", ds, err)
	}
	want := "this tli was built without Vulkan support: build with -tags vulkan (see README)"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if !strings.Contains(err.Error(), "-tags vulkan") {
		t.Fatal("the error does not name the build tag")
	}
}

func TestStubSelect(t *testing.T) {
	if _, err := Select("vulkan"); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Select(vulkan) = %v, want ErrNotBuilt", err)
	}
	if _, err := Select("cuda"); err == nil || errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Select(cuda) = %v, want a bad-spec error", err)
	}
}
