/* What the compiler and platform allow, decided in one place: the kernels give the same bytes everywhere,
 * so these choices only decide speed, except the 32-bit x86 check (x87 arithmetic gives other values). */
#ifndef FILLERS_PLATFORM_H
#define FILLERS_PLATFORM_H

#include <string.h> /* any C library header: defines __GLIBC__ where it applies */

/* 32-bit x86 must compute in SSE2 registers: x87's extended precision rounds differently.  setup.py passes
 * -msse2 -mfpmath=sse to GCC and clang there; MSVC uses SSE2 by default (/arch:SSE2). */
#if (defined(__i386__) || defined(_M_IX86)) && !defined(__SSE2_MATH__) && !(defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#error "fillers needs SSE2 arithmetic on 32-bit x86 (GCC/clang: -msse2 -mfpmath=sse): x87 arithmetic gives other values"
#endif

/* Run-time SIMD dispatch (AVX2 and AVX-512 paths compiled with target attributes, chosen with
 * __builtin_cpu_supports): x86-64 with GCC or clang only.  Every other machine and compiler runs the scalar
 * path, which gives the same bytes. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(_MSC_VER)
#define FL_X86_SIMD 1
#else
#define FL_X86_SIMD 0
#endif

/* Compiler-generated clones of a function for the listed targets, picked at load time: GNU ifunc, so GCC
 * on x86-64 glibc only (musl has no ifunc); elsewhere one portable version. */
#if FL_X86_SIMD && !defined(__clang__) && !defined(__INTEL_COMPILER) && defined(__GLIBC__) && defined(__ELF__)
#define FL_TARGET_CLONES(...) __attribute__((target_clones(__VA_ARGS__)))
#else
#define FL_TARGET_CLONES(...)
#endif

#endif
