# cuda.cmake - the GPU backend layer (src/backend) and, with QF_CUDA=ON, its
# CUDA device.
#
# Included from the root CMakeLists.txt after the qf target is defined:
#   include(cmake/cuda.cmake OPTIONAL)
#
# Always: src/backend/backend.c joins qf, so qf_gpu_available() and friends
# exist in every build (without a device backend they report "no device").
# QF_CUDA=ON (off by default; CPU builds and CI need no CUDA toolkit):
#   - enables the CUDA language (nvcc) and builds the static library qf_cuda
#     from src/backend/cuda/*.cu, linked into qf with the static CUDA runtime;
#   - defines QF_HAVE_CUDA for qf and its users (backend.c lists the device,
#     tests/backend checks kernels directly);
#   - adds bench_gpu (bench/bench_gpu.c).
# Files: cuda_dev.cu (device setup, step orchestration, graphs), cuda_mm.cu
# (weight repacking, mmq for batches), cuda_mv.cu (one token: the
# matrix-vector kernel with its bulk-copy weight stream), cuda_ops.cu
# (norms/encodings, RoPE, kv store, attention).
# CMAKE_CUDA_ARCHITECTURES defaults to 80;86;89;90 (the int8 mma kernels need
# sm_80; sm_90 adds programmatic dependent launch). Pass e.g.
# -DCMAKE_CUDA_ARCHITECTURES=90 to build faster for one card.

option(QF_CUDA "Build the CUDA backend (needs the CUDA toolkit)" OFF)

set(QF_BACKEND_DIR ${CMAKE_CURRENT_LIST_DIR}/../src/backend)
get_filename_component(QF_BACKEND_DIR ${QF_BACKEND_DIR} ABSOLUTE)
target_sources(qf PRIVATE ${QF_BACKEND_DIR}/backend.c)
set(QF_BACKEND_LAYER ON)

if(QF_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 86 89 90)
  endif()
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)

  file(GLOB QF_CUDA_SRC CONFIGURE_DEPENDS ${QF_BACKEND_DIR}/cuda/*.cu)
  add_library(qf_cuda STATIC ${QF_CUDA_SRC})
  target_include_directories(qf_cuda PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../src)
  # The directory's C options (-Wall, -Werror, -fsanitize=...) reach this
  # target too; nvcc takes host-compiler flags through -Xcompiler.
  get_target_property(_qf_cuda_opts qf_cuda COMPILE_OPTIONS)
  set(_qf_cuda_new "")
  foreach(o IN LISTS _qf_cuda_opts)
    if(o STREQUAL "-Werror")
      list(APPEND _qf_cuda_new "-Xcompiler=-Werror" "-Werror=all-warnings")
    elseif(o MATCHES "^-[WfO]")
      # -O2 of the directory is for the host compiler: nvcc would warn that
      # it redefines the build type's -O3
      list(APPEND _qf_cuda_new "-Xcompiler=${o}")
    else()
      list(APPEND _qf_cuda_new "${o}")
    endif()
  endforeach()
  set_target_properties(qf_cuda PROPERTIES COMPILE_OPTIONS "${_qf_cuda_new}")
  # -Xptxas -v prints registers/spills per kernel with QF_CUDA_VERBOSE=ON
  option(QF_CUDA_VERBOSE "Print the ptxas resource report of the CUDA kernels" OFF)
  if(QF_CUDA_VERBOSE)
    target_compile_options(qf_cuda PRIVATE -Xptxas=-v)
  endif()
  target_compile_definitions(qf_cuda PRIVATE _GNU_SOURCE)
  set_target_properties(qf_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_RUNTIME_LIBRARY Static)
  # qf_cuda calls back into qf (errors, logging, quant tables): a cycle of
  # static libraries, which CMake repeats on the link line.
  target_link_libraries(qf_cuda PUBLIC CUDA::cudart_static qf)
  target_link_libraries(qf PUBLIC qf_cuda)
  target_compile_definitions(qf PUBLIC QF_HAVE_CUDA)

  add_executable(bench_gpu ${CMAKE_CURRENT_LIST_DIR}/../bench/bench_gpu.c)
  target_link_libraries(bench_gpu PRIVATE qf)
  target_link_options(bench_gpu PRIVATE -Wl,--as-needed)
endif()
