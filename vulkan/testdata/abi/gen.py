#!/usr/bin/env python3
"""Generates the C-ABI mirror structs of the vulkan package from vulkan_core.h.

Run by hand (see gen.sh); never by go build or go test. It writes

  vulkan/abi_gen.go         Go structs, field for field as in the header
  testdata/abi/layout.c     a C program printing every struct's size and
                            every field's offset and size as Go source
                            (gcc compiles it; its output is
                            vulkan/abi_layout_test.go)

Usage: gen.py HEADER OUT_GO OUT_C
"""
import re
import sys

STRUCTS = """
VkApplicationInfo VkInstanceCreateInfo VkExtensionProperties
VkPhysicalDeviceLimits VkPhysicalDeviceSparseProperties VkPhysicalDeviceProperties
VkMemoryType VkMemoryHeap VkPhysicalDeviceMemoryProperties
VkExtent3D VkQueueFamilyProperties
VkPhysicalDeviceProperties2 VkPhysicalDeviceSubgroupProperties
VkPhysicalDeviceSubgroupSizeControlProperties
VkConformanceVersion VkPhysicalDeviceDriverProperties
VkPhysicalDeviceFeatures VkPhysicalDeviceFeatures2
VkPhysicalDevice16BitStorageFeatures VkPhysicalDevice8BitStorageFeatures
VkPhysicalDeviceShaderFloat16Int8Features
VkPhysicalDeviceShaderIntegerDotProductFeatures
VkPhysicalDeviceShaderBfloat16FeaturesKHR
VkPhysicalDeviceCooperativeMatrixFeaturesKHR
VkDeviceQueueCreateInfo VkDeviceCreateInfo
VkCommandPoolCreateInfo VkCommandBufferAllocateInfo VkCommandBufferBeginInfo
VkFenceCreateInfo VkSubmitInfo VkMemoryBarrier VkBufferCopy
VkMemoryAllocateInfo VkMemoryRequirements VkBufferCreateInfo
VkShaderModuleCreateInfo VkDescriptorSetLayoutBinding VkDescriptorSetLayoutCreateInfo
VkPushConstantRange VkPipelineLayoutCreateInfo
VkSpecializationMapEntry VkSpecializationInfo
VkPipelineShaderStageCreateInfo VkComputePipelineCreateInfo
VkDescriptorPoolSize VkDescriptorPoolCreateInfo VkDescriptorSetAllocateInfo
VkDescriptorBufferInfo VkWriteDescriptorSet
""".split()

CONSTS = """
VK_SUCCESS VK_INCOMPLETE VK_ERROR_INCOMPATIBLE_DRIVER VK_ERROR_INITIALIZATION_FAILED
VK_STRUCTURE_TYPE_APPLICATION_INFO VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2 VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_BFLOAT16_FEATURES_KHR
VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR
VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR
VK_QUEUE_GRAPHICS_BIT VK_QUEUE_COMPUTE_BIT VK_QUEUE_TRANSFER_BIT
VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
VK_SHADER_STAGE_COMPUTE_BIT
VK_PHYSICAL_DEVICE_TYPE_OTHER VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU VK_PHYSICAL_DEVICE_TYPE_CPU
VK_API_VERSION_1_1 VK_API_VERSION_1_2 VK_API_VERSION_1_3
VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
VK_STRUCTURE_TYPE_SUBMIT_INFO VK_STRUCTURE_TYPE_MEMORY_BARRIER
VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
VK_ERROR_OUT_OF_HOST_MEMORY VK_ERROR_OUT_OF_DEVICE_MEMORY VK_ERROR_OUT_OF_POOL_MEMORY VK_ERROR_FRAGMENTED_POOL
VK_TIMEOUT VK_NOT_READY
VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT VK_COMMAND_BUFFER_LEVEL_PRIMARY
VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT
VK_BUFFER_USAGE_TRANSFER_SRC_BIT VK_BUFFER_USAGE_TRANSFER_DST_BIT VK_BUFFER_USAGE_STORAGE_BUFFER_BIT
VK_SHARING_MODE_EXCLUSIVE VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
VK_PIPELINE_BIND_POINT_COMPUTE
VK_PIPELINE_STAGE_TRANSFER_BIT VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT VK_PIPELINE_STAGE_HOST_BIT
VK_ACCESS_SHADER_READ_BIT VK_ACCESS_SHADER_WRITE_BIT VK_ACCESS_TRANSFER_READ_BIT VK_ACCESS_TRANSFER_WRITE_BIT
VK_ACCESS_HOST_READ_BIT VK_ACCESS_HOST_WRITE_BIT
""".split()

GO_KEYWORDS = {"type", "range", "func", "map", "chan", "go", "select", "interface", "package", "var", "defer", "fallthrough", "import"}

SCALARS = {
    "uint8_t": "uint8", "char": "byte", "int32_t": "int32", "uint32_t": "uint32",
    "uint64_t": "uint64", "int64_t": "int64", "float": "float32", "size_t": "uintptr",
    "VkDeviceSize": "uint64", "VkDeviceAddress": "uint64", "VkBool32": "uint32",
    "VkFlags": "uint32", "VkFlags64": "uint64", "VkSampleMask": "uint32",
}


def main():
    header, out_go, out_c = sys.argv[1:4]
    src = open(header).read()
    version = re.search(r"#define VK_HEADER_VERSION (\d+)", src).group(1)
    defines = dict(re.findall(r"#define (VK_\w+)\s+(\d+)U?\b", src))
    typedefs = dict((b, a) for a, b in re.findall(r"typedef (\w+) (\w+);", src))
    enums = set(re.findall(r"typedef enum (\w+) \{", src))
    handles = set(re.findall(r"VK_DEFINE(?:_NON_DISPATCHABLE)?_HANDLE\((\w+)\)", src))

    def gotype(t):
        if t in SCALARS:
            return SCALARS[t]
        if t in enums:
            return "uint32"
        if t in handles:
            return "uintptr"  # a pointer on 64-bit targets, dispatchable or not
        if t in typedefs:
            return gotype(typedefs[t])
        if t in STRUCTS:
            return "vk" + t[2:]
        raise SystemExit("unknown C type " + t)

    go = ["// Code generated by testdata/abi/gen.py from vulkan_core.h (VK_HEADER_VERSION %s); DO NOT EDIT." % version,
          "", "//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)", "", "package vulkan", "", 'import "unsafe"', "",
          "var _ unsafe.Pointer", ""]
    c = ["#include <stddef.h>", "#include <stdio.h>", "#include <vulkan/vulkan_core.h>", "",
         "#define S(T) printf(\"\\t{\\\"vk%s\\\", \\\"\\\", %zu, %zu},\\n\", #T + 2, sizeof(T), _Alignof(T));",
         "#define F(T, f) printf(\"\\t{\\\"vk%s\\\", \\\"%s\\\", %zu, %zu},\\n\", #T + 2, #f, offsetof(T, f), sizeof(((T *)0)->f));",
         "#define K(T, f) printf(\"\\t{\\\"vk%s\\\", \\\"%s_\\\", %zu, %zu},\\n\", #T + 2, #f, offsetof(T, f), sizeof(((T *)0)->f));",
         "", "int main(void) {",
         '\tprintf("// Code generated by testdata/abi/gen.sh (gcc on vulkan_core.h VK_HEADER_VERSION %d); DO NOT EDIT.\\n\\n", VK_HEADER_VERSION);',
         '\tprintf("//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)\\n\\npackage vulkan\\n\\n");',
         '\tprintf("// cLayout is the C layout of every mirrored struct: struct, field (empty: the struct itself), offset or size, size or alignment.\\n");',
         '\tprintf("var cLayout = []cField{\\n");']
    for name in STRUCTS:
        m = re.search(r"typedef struct %s \{(.*?)\} %s;" % (name, name), src, re.S)
        if not m:
            raise SystemExit("struct not found: " + name)
        go.append("type vk%s struct {" % name[2:])
        c.append("\tS(%s)" % name)
        for line in m.group(1).strip().splitlines():
            line = line.strip().rstrip(";")
            if not line or line.startswith("//"):
                continue  # a comment line of the header
            fm = re.match(r"(.*?)(\w+)(\[(\w+)\])?$", line)
            ctype, field, _, n = fm.groups()
            ctype = ctype.replace("const", " ").strip()
            if "*" in ctype:
                gt = "unsafe.Pointer"
            else:
                gt = gotype(ctype.strip())
            if n:
                n = defines.get(n, n)
                gt = "[%s]%s" % (n, gt)
            if field in GO_KEYWORDS:  # type, range: field_ in Go
                go.append("\t%s_ %s" % (field, gt))
                c.append("\tK(%s, %s)" % (name, field))
            else:
                go.append("\t%s %s" % (field, gt))
                c.append("\tF(%s, %s)" % (name, field))
        go.append("}")
        go.append("")
    c.append('\tprintf("}\\n\\n// cConst holds the header value of every constant the package uses.\\nvar cConst = map[string]int64{\\n");')
    for k in CONSTS:
        c.append('\tprintf("\\t\\"%s\\": %%lld,\\n", (long long)(%s));' % (k, k))
    c += ['\tprintf("}\\n");', "\treturn 0;", "}", ""]
    open(out_go, "w").write("\n".join(go))
    open(out_c, "w").write("\n".join(c))


main()
