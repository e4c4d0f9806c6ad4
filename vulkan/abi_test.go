//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"reflect"
	"testing"
	"unsafe"
)

// cField is one row of cLayout (abi_layout_test.go, printed by gcc from
// vulkan_core.h by testdata/abi/gen.sh): for a struct (field ""), its size
// and alignment; for a field, its offset and size.
type cField struct {
	Struct, Field string
	A, B          uintptr
}

// abiTypes are the Go mirrors of the C structs (abi_gen.go).
var abiTypes = map[string]reflect.Type{}

func init() {
	for _, v := range []any{
		vkApplicationInfo{}, vkInstanceCreateInfo{}, vkExtensionProperties{},
		vkPhysicalDeviceLimits{}, vkPhysicalDeviceSparseProperties{}, vkPhysicalDeviceProperties{},
		vkMemoryType{}, vkMemoryHeap{}, vkPhysicalDeviceMemoryProperties{},
		vkExtent3D{}, vkQueueFamilyProperties{},
		vkPhysicalDeviceProperties2{}, vkPhysicalDeviceSubgroupProperties{},
		vkPhysicalDeviceSubgroupSizeControlProperties{},
		vkConformanceVersion{}, vkPhysicalDeviceDriverProperties{},
		vkPhysicalDeviceFeatures{}, vkPhysicalDeviceFeatures2{},
		vkPhysicalDevice16BitStorageFeatures{}, vkPhysicalDevice8BitStorageFeatures{},
		vkPhysicalDeviceShaderFloat16Int8Features{},
		vkPhysicalDeviceShaderIntegerDotProductFeatures{},
		vkPhysicalDeviceShaderBfloat16FeaturesKHR{},
		vkPhysicalDeviceCooperativeMatrixFeaturesKHR{},
		vkDeviceQueueCreateInfo{}, vkDeviceCreateInfo{},
		vkCommandPoolCreateInfo{}, vkCommandBufferAllocateInfo{}, vkCommandBufferBeginInfo{},
		vkFenceCreateInfo{}, vkSubmitInfo{}, vkMemoryBarrier{}, vkBufferCopy{},
		vkMemoryAllocateInfo{}, vkMemoryRequirements{}, vkBufferCreateInfo{},
		vkShaderModuleCreateInfo{}, vkDescriptorSetLayoutBinding{}, vkDescriptorSetLayoutCreateInfo{},
		vkPushConstantRange{}, vkPipelineLayoutCreateInfo{},
		vkSpecializationMapEntry{}, vkSpecializationInfo{},
		vkPipelineShaderStageCreateInfo{}, vkComputePipelineCreateInfo{},
		vkDescriptorPoolSize{}, vkDescriptorPoolCreateInfo{}, vkDescriptorSetAllocateInfo{},
		vkDescriptorBufferInfo{}, vkWriteDescriptorSet{},
	} {
		t := reflect.TypeOf(v)
		abiTypes[t.Name()] = t
	}
}

// TestABILayout checks every size, alignment and offset of the Go mirrors
// against the C layout gcc computed from the header, and that the Go
// structs have no field the header does not.
func TestABILayout(t *testing.T) {
	seen := map[string]int{}
	for _, c := range cLayout {
		typ, ok := abiTypes[c.Struct]
		if !ok {
			t.Errorf("%s: no Go mirror", c.Struct)
			continue
		}
		if c.Field == "" {
			if typ.Size() != c.A || uintptr(typ.Align()) != c.B {
				t.Errorf("%s: Go size %d align %d, C size %d align %d", c.Struct, typ.Size(), typ.Align(), c.A, c.B)
			}
			continue
		}
		f, ok := typ.FieldByName(c.Field)
		if !ok {
			t.Errorf("%s.%s: no such Go field", c.Struct, c.Field)
			continue
		}
		seen[c.Struct]++
		if f.Offset != c.A || f.Type.Size() != c.B {
			t.Errorf("%s.%s: Go offset %d size %d, C offset %d size %d", c.Struct, c.Field, f.Offset, f.Type.Size(), c.A, c.B)
		}
	}
	for name, typ := range abiTypes {
		if seen[name] != typ.NumField() {
			t.Errorf("%s: %d Go fields, %d in C", name, typ.NumField(), seen[name])
		}
	}
	// Spot checks against numbers read off the header by hand.
	if s := unsafe.Sizeof(vkPhysicalDeviceProperties{}); s != 824 {
		t.Errorf("sizeof VkPhysicalDeviceProperties = %d, want 824", s)
	}
	if s := unsafe.Sizeof(vkPhysicalDeviceMemoryProperties{}); s != 520 {
		t.Errorf("sizeof VkPhysicalDeviceMemoryProperties = %d, want 520", s)
	}
	if o := unsafe.Offsetof(vkPhysicalDeviceProperties{}.limits); o != 296 {
		t.Errorf("offsetof VkPhysicalDeviceProperties.limits = %d, want 296", o)
	}
}

// TestConstants checks the package's constants against the header's values.
func TestConstants(t *testing.T) {
	got := map[string]int64{
		"VK_SUCCESS": vkSuccess, "VK_INCOMPLETE": vkIncomplete,
		"VK_ERROR_INCOMPATIBLE_DRIVER":                                          vkErrorIncompatibleDriver,
		"VK_ERROR_INITIALIZATION_FAILED":                                        vkErrorInitializationFailed,
		"VK_STRUCTURE_TYPE_APPLICATION_INFO":                                    stApplicationInfo,
		"VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO":                                stInstanceCreateInfo,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2":                          stFeatures2,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2":                        stProperties2,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES":                 stSubgroupProperties,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES":    stSubgroupSizeControlProps,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES":                   stDriverProperties,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES":              st16BitStorageFeatures,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES":               st8BitStorageFeatures,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES":        stFloat16Int8Features,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES": stIntegerDotProductFeatures,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_BFLOAT16_FEATURES_KHR":        stBfloat16Features,
		"VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR":     stCooperativeMatrixFeatures,
		"VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR":                      instanceEnumeratePortability,
		"VK_QUEUE_GRAPHICS_BIT":                                                 queueGraphics, "VK_QUEUE_COMPUTE_BIT": queueCompute, "VK_QUEUE_TRANSFER_BIT": queueTransfer,
		"VK_MEMORY_HEAP_DEVICE_LOCAL_BIT":      heapDeviceLocal,
		"VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT":  memoryDeviceLocal,
		"VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT":  memoryHostVisible,
		"VK_MEMORY_PROPERTY_HOST_COHERENT_BIT": memoryHostCoherent,
		"VK_SHADER_STAGE_COMPUTE_BIT":          shaderStageCompute,
		"VK_PHYSICAL_DEVICE_TYPE_OTHER":        0, "VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU": 1,
		"VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU": 2, "VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU": 3, "VK_PHYSICAL_DEVICE_TYPE_CPU": 4,
		"VK_API_VERSION_1_1": apiVersion11, "VK_API_VERSION_1_2": apiVersion12, "VK_API_VERSION_1_3": apiVersion13,
		"VK_NOT_READY": vkNotReady, "VK_TIMEOUT": vkTimeout,
		"VK_ERROR_OUT_OF_HOST_MEMORY": vkErrorOutOfHostMemory, "VK_ERROR_OUT_OF_DEVICE_MEMORY": vkErrorOutOfDeviceMemory,
		"VK_ERROR_FRAGMENTED_POOL": vkErrorFragmentedPool, "VK_ERROR_OUT_OF_POOL_MEMORY": vkErrorOutOfPoolMemory,
		"VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO":          stDeviceQueueCreateInfo,
		"VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO":                stDeviceCreateInfo,
		"VK_STRUCTURE_TYPE_SUBMIT_INFO":                       stSubmitInfo,
		"VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO":              stMemoryAllocateInfo,
		"VK_STRUCTURE_TYPE_FENCE_CREATE_INFO":                 stFenceCreateInfo,
		"VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO":                stBufferCreateInfo,
		"VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO":         stShaderModuleCreateInfo,
		"VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO": stShaderStageCreateInfo,
		"VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO":      stComputePipelineCreate,
		"VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO":       stPipelineLayoutCreateInfo,
		"VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO": stSetLayoutCreateInfo,
		"VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO":       stDescriptorPoolCreateInfo,
		"VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO":      stDescriptorSetAllocInfo,
		"VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET":              stWriteDescriptorSet,
		"VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO":          stCommandPoolCreateInfo,
		"VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO":      stCommandBufferAllocInfo,
		"VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO":         stCommandBufferBeginInfo,
		"VK_STRUCTURE_TYPE_MEMORY_BARRIER":                    stMemoryBarrier,
		"VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT":     poolResetCommandBuffer,
		"VK_COMMAND_BUFFER_LEVEL_PRIMARY":                     commandBufferLevelPrimary,
		"VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT":         usageOneTimeSubmit,
		"VK_BUFFER_USAGE_TRANSFER_SRC_BIT":                    bufferTransferSrc,
		"VK_BUFFER_USAGE_TRANSFER_DST_BIT":                    bufferTransferDst,
		"VK_BUFFER_USAGE_STORAGE_BUFFER_BIT":                  bufferStorage,
		"VK_SHARING_MODE_EXCLUSIVE":                           sharingExclusive,
		"VK_DESCRIPTOR_TYPE_STORAGE_BUFFER":                   descriptorStorageBuffer,
		"VK_PIPELINE_BIND_POINT_COMPUTE":                      bindPointCompute,
		"VK_PIPELINE_STAGE_TRANSFER_BIT":                      stageTransfer,
		"VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT":                stageCompute,
		"VK_PIPELINE_STAGE_HOST_BIT":                          stageHost,
		"VK_ACCESS_SHADER_READ_BIT":                           accessShaderRead,
		"VK_ACCESS_SHADER_WRITE_BIT":                          accessShaderWrite,
		"VK_ACCESS_TRANSFER_READ_BIT":                         accessTransferRead,
		"VK_ACCESS_TRANSFER_WRITE_BIT":                        accessTransferWrite,
		"VK_ACCESS_HOST_READ_BIT":                             accessHostRead,
		"VK_ACCESS_HOST_WRITE_BIT":                            accessHostWrite,
	}
	for name, want := range cConst {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: not checked", name)
		} else if g != want {
			t.Errorf("%s = %d, header %d", name, g, want)
		}
	}
	for _, typ := range []uint32{0, 1, 2, 3, 4} {
		if deviceType(typ) == "" {
			t.Errorf("deviceType(%d) empty", typ)
		}
	}
}
