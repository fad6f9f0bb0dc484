# Compiler settings every qmpkit target links privately through qmpkit::build_options.
add_library(qmpkit_build_options INTERFACE)
add_library(qmpkit::build_options ALIAS qmpkit_build_options)

target_compile_options(qmpkit_build_options INTERFACE -Wall -Wextra)
if(QMPKIT_WERROR)
    target_compile_options(qmpkit_build_options INTERFACE -Werror)
endif()

if(QMPKIT_SANITIZE)
    # Sanitizers must reach every object and the link, so they are set globally.
    add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined)
    add_link_options(-fsanitize=address,undefined)
endif()
