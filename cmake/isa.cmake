# isa.cmake - per-file instruction-set flags for the quant kernels.
#
# Only src/quant/avx2.c, avx512.c, avx512_amx.c, avx512_attn.c and neon.c contain ISA-specific
# code; each
# is compiled with its own flags here and guards itself with
# #if defined(__x86_64__) / defined(__aarch64__), so on other architectures
# it compiles to nothing. The rest of the library is built for the baseline
# ISA; quant/kernels.c picks the table at run time from the CPU (cpuid,
# hwcaps), so one binary runs everywhere.
#
# Included from the root CMakeLists.txt after the qf target is defined (or
# passed as -DCMAKE_PROJECT_INCLUDE=cmake/isa.cmake): set_source_files_properties
# must run in the directory that defines the target.

include(CheckCCompilerFlag)

set(QF_QUANT_DIR ${CMAKE_CURRENT_LIST_DIR}/../src/quant)
get_filename_component(QF_QUANT_DIR ${QF_QUANT_DIR} ABSOLUTE)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set_source_files_properties(${QF_QUANT_DIR}/avx2.c PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-O3")
  # AVX-512 F/BW/VL/DQ + VNNI; AMX tiles (int8, bf16) for prompt processing
  # where the compiler knows them (avx512.c checks __AMX_INT8__/__AMX_BF16__,
  # and the CPU and OS at run time).
  set(QF_AVX512_FLAGS "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-O3")
  check_c_compiler_flag("-mamx-tile -mamx-int8 -mamx-bf16" QF_CC_HAS_AMX)
  if(QF_CC_HAS_AMX)
    list(APPEND QF_AVX512_FLAGS "-mamx-tile" "-mamx-int8" "-mamx-bf16")
  endif()
  set_source_files_properties(${QF_QUANT_DIR}/avx512.c ${QF_QUANT_DIR}/avx512_amx.c ${QF_QUANT_DIR}/avx512_attn.c
    PROPERTIES
    COMPILE_OPTIONS "${QF_AVX512_FLAGS}")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  # sdot for the int8 dots, fp16 conversions; neon.c checks the CPU's hwcaps
  # (Linux) before its table is used.
  set_source_files_properties(${QF_QUANT_DIR}/neon.c PROPERTIES
    COMPILE_OPTIONS "-march=armv8.2-a+dotprod+fp16;-O3")
endif()
