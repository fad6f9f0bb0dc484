# Compiler settings every qmpkit target links privately through qmpkit::build_options.
add_library(qmpkit_build_options INTERFACE)
add_library(qmpkit::build_options ALIAS qmpkit_build_options)

target_compile_options(qmpkit_build_options INTERFACE -Wall -Wextra)
if(QMPKIT_WERROR)
    target_compile_options(qmpkit_build_options INTERFACE -Werror)
endif()

# File and line are what sanitizer reports, crash stack traces and perf need; the rest of the
# debug information (types, variables) is for a debugger, and producing it is a third of the
# compile time under the sanitizers (a snapshot plan file at -O1: 19 s with -g1, 29 s with -g) and
# a seventh at -O2. It comes after the build type's -g on the command line, so it wins.
if(QMPKIT_LINE_TABLES_ONLY)
    target_compile_options(qmpkit_build_options INTERFACE $<$<CONFIG:Debug,RelWithDebInfo>:-g1>)
endif()

if(QMPKIT_SANITIZE)
    # Sanitizers must reach every object and the link, so they are set globally.
    add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined)
    add_link_options(-fsanitize=address,undefined)
endif()

if(QMPKIT_FUZZ)
    if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
        message(FATAL_ERROR "QMPKIT_FUZZ needs clang (-DCMAKE_CXX_COMPILER=clang++): libFuzzer "
                            "is part of clang")
    endif()
    # Every object gets coverage instrumentation and the sanitizers; only the fuzz targets link
    # libFuzzer's main (-fsanitize=fuzzer, in tests/fuzz).
    add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined)
    add_link_options(-fsanitize=address,undefined)
endif()

if(QMPKIT_TSAN)
    if(QMPKIT_SANITIZE)
        message(FATAL_ERROR "QMPKIT_TSAN and QMPKIT_SANITIZE exclude each other: use two builds")
    endif()
    add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
    add_link_options(-fsanitize=thread)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        # GCC warns that TSan cannot see the fences in Asio's reference counts and handler
        # blocks; each sits next to an atomic operation or a mutex that TSan does see.
        add_compile_options(-Wno-tsan)
    endif()
endif()
