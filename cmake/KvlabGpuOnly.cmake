# KVLAB_GPU_ONLY=ON: the target set the GPU machine builds (kernels/bench/device_run.sh), with
# only what that machine has: a C compiler, nvcc + cuBLAS, CMake, ninja, OpenMP. No GSL, gnuplot,
# HDF5, inih, yajl, PCRE2 or MPI are looked for. Builds: the core of common/ (errors, RNG, pool), the
# CPU reference (kv_attn, the oracle), the CUDA library, kvbench, and the tests test_kvc_host and
# test_gpu_attn (the latter reads the recorded sample through kernels/bench/qkv_to_raw.py's raw
# export, KVLAB_QKV_RAW, instead of HDF5). Included from the top-level CMakeLists.txt.
find_package(OpenMP COMPONENTS C)
find_package(Threads REQUIRED)

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "KVLAB_GPU_ONLY=ON needs a CUDA compiler (nvcc on PATH or CUDACXX)")
endif()
set(CMAKE_CUDA_ARCHITECTURES ${KVLAB_CUDA_ARCHITECTURES})
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(KVLAB_HAVE_CUDA ON)
message(STATUS "kvlab: GPU-only build (kernels, GPU tests, kvbench) for CUDA architectures "
               "${CMAKE_CUDA_ARCHITECTURES}; OpenMP ${OpenMP_C_FOUND}")

# The part of common/ the kernels need (kv_err, kv_rng, the block-pool accounting kv_pool, the
# output helper kv_fs for kvbench's CSV files -- plain POSIX; kv_half.h is header-only), under the
# name the full build gives all of common/.
kvlab_add_library(kv_common common/kv_err.c common/kv_rng.c common/kv_pool.c common/kv_fs.c)
target_include_directories(kv_common PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
target_compile_definitions(kv_common PRIVATE KVLAB_VERSION="${PROJECT_VERSION}")
target_link_libraries(kv_common PUBLIC m Threads::Threads)

add_subdirectory(kernels)   # kernels/CMakeLists.txt skips its HDF5 parts under KVLAB_GPU_ONLY
if(BUILD_TESTING)
  add_library(kvlab_test_util STATIC tests/test_util.c)
  target_include_directories(kvlab_test_util PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/tests)
  kvlab_target_defaults(kvlab_test_util)
  add_subdirectory(tests/gpu)
endif()
