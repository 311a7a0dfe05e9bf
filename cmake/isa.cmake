# isa.cmake - per-file instruction-set flags for the quant kernels.
#
# Only src/quant/avx2.c, avx512.c and neon.c contain ISA-specific code; each
# is compiled with its own flags here and guards itself with
# #if defined(__x86_64__) / defined(__aarch64__), so on other architectures
# it compiles to nothing. The rest of the library is built for the baseline
# ISA; quant/kernels.c picks the table at run time from the CPU.
#
# Included from the root CMakeLists.txt after project() (or passed as
# -DCMAKE_PROJECT_INCLUDE=cmake/isa.cmake), so set_source_files_properties
# applies in the directory that defines the qf target.

set(QF_QUANT_DIR ${CMAKE_CURRENT_LIST_DIR}/../src/quant)
get_filename_component(QF_QUANT_DIR ${QF_QUANT_DIR} ABSOLUTE)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set_source_files_properties(${QF_QUANT_DIR}/avx2.c PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-O3")
  set_source_files_properties(${QF_QUANT_DIR}/avx512.c PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-O3")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  # dotprod (sdot) for the int8 dots, fp16 arithmetic for F16; neon.c checks
  # the CPU's hwcaps before it is used.
  set_source_files_properties(${QF_QUANT_DIR}/neon.c PROPERTIES
    COMPILE_OPTIONS "-march=armv8.2-a+dotprod+fp16;-O3")
endif()
