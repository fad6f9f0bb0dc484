# Installation and packaging: `cmake --install` puts the public headers, the libraries, the
# qmpkit tool with its bash completion and man page, a CMake package (find_package(qmpkit)) and
# a pkg-config file (qmpkit.pc) in place; `cpack -G DEB` (scripts/package) makes Debian packages.
#
# The libraries are static by default (BUILD_SHARED_LIBS=ON builds them shared): qmpkit is at 0.x
# and its C++ API has no stable ABI to promise through a soname yet, and a static qmpkit leaves
# the tool and every embedder with no qmpkit library to find at run time. They are compiled as
# position-independent code, so an embedder can link them into a shared object of its own.
include(CMakePackageConfigHelpers)

set(QMPKIT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/qmpkit)
set(QMPKIT_BOOST_VERSION 1.81)

set(qmpkit_libraries)
foreach(layer qmp launcher snapshot)
    if(TARGET qmpkit_${layer})
        list(PREPEND qmpkit_libraries ${layer})
    endif()
endforeach()
foreach(layer ${qmpkit_libraries} asio)
    set_target_properties(qmpkit_${layer} PROPERTIES POSITION_INDEPENDENT_CODE ON
        VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
endforeach()

# The GoogleTest integration (built where GoogleTest is installed) needs GoogleTest found too.
if(TARGET qmpkit_testing)
    set_target_properties(qmpkit_testing PROPERTIES POSITION_INDEPENDENT_CODE ON
        VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
    set(QMPKIT_CONFIG_HAS_TESTING TRUE)
else()
    set(QMPKIT_CONFIG_HAS_TESTING FALSE)
endif()

# Static archives carry their private link dependencies: yaml-cpp (launcher) must be found too.
if(TARGET qmpkit_launcher AND NOT BUILD_SHARED_LIBS)
    set(QMPKIT_CONFIG_NEEDS_YAML_CPP TRUE)
else()
    set(QMPKIT_CONFIG_NEEDS_YAML_CPP FALSE)
endif()

install(EXPORT qmpkit-targets NAMESPACE qmpkit:: FILE qmpkit-targets.cmake
    DESTINATION ${QMPKIT_CMAKE_DIR} COMPONENT development)
configure_package_config_file(cmake/qmpkit-config.cmake.in
    ${PROJECT_BINARY_DIR}/qmpkit-config.cmake INSTALL_DESTINATION ${QMPKIT_CMAKE_DIR})
# A request for 1.2 accepts any 1.x from 1.2 on (for 0.x, any 0.y from the one asked for).
write_basic_package_version_file(${PROJECT_BINARY_DIR}/qmpkit-config-version.cmake
    COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/qmpkit-config.cmake
              ${PROJECT_BINARY_DIR}/qmpkit-config-version.cmake
    DESTINATION ${QMPKIT_CMAKE_DIR} COMPONENT development)

# pkg-config, relocatable: the prefix is found from the .pc file's own directory.
file(RELATIVE_PATH QMPKIT_PC_PREFIX_FROM_PCDIR
    ${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" QMPKIT_PC_PREFIX_FROM_PCDIR "${QMPKIT_PC_PREFIX_FROM_PCDIR}")
set(QMPKIT_PC_LIBS)
foreach(layer ${qmpkit_libraries})
    string(APPEND QMPKIT_PC_LIBS " -lqmpkit_${layer}")
endforeach()
string(STRIP "${QMPKIT_PC_LIBS}" QMPKIT_PC_LIBS)
set(QMPKIT_PC_REQUIRES spdlog)
if(QMPKIT_CONFIG_NEEDS_YAML_CPP)
    string(APPEND QMPKIT_PC_REQUIRES " yaml-cpp")
endif()
configure_file(cmake/qmpkit.pc.in ${PROJECT_BINARY_DIR}/qmpkit.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/qmpkit.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT development)

# The tool, with bash completion and a man page printed by the tool from its own command tree.
if(TARGET qmpkit)
    install(TARGETS qmpkit RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
    set(qmpkit_completion ${PROJECT_BINARY_DIR}/share/bash-completion/completions/qmpkit)
    set(qmpkit_man ${PROJECT_BINARY_DIR}/share/man/man1/qmpkit.1)
    set(qmpkit_definition_man ${PROJECT_BINARY_DIR}/share/man/man5/qmpkit-definition.5)
    set(qmpkit_json_schema ${PROJECT_BINARY_DIR}/share/qmpkit/definition.schema.json)
    add_custom_command(
        OUTPUT ${qmpkit_completion} ${qmpkit_man} ${qmpkit_definition_man} ${qmpkit_json_schema}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/share/bash-completion/completions
                ${PROJECT_BINARY_DIR}/share/man/man1 ${PROJECT_BINARY_DIR}/share/man/man5
                ${PROJECT_BINARY_DIR}/share/qmpkit
        COMMAND qmpkit --generate bash-completion ${qmpkit_completion}
        COMMAND qmpkit --generate man ${qmpkit_man}
        COMMAND qmpkit --generate definition-man ${qmpkit_definition_man}
        COMMAND qmpkit --generate definition-json-schema ${qmpkit_json_schema}
        DEPENDS qmpkit
        COMMENT "Generating qmpkit's bash completion, man pages and definition schema"
        VERBATIM)
    add_custom_target(qmpkit_docs ALL DEPENDS
        ${qmpkit_completion} ${qmpkit_man} ${qmpkit_definition_man} ${qmpkit_json_schema})
    install(FILES ${qmpkit_completion}
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT runtime)
    # For editors: `# yaml-language-server: $schema=/usr/share/qmpkit/definition.schema.json`.
    install(FILES ${qmpkit_json_schema}
        DESTINATION ${CMAKE_INSTALL_DATADIR}/qmpkit COMPONENT runtime)
    # Debian policy: man pages are installed compressed.
    install(CODE "
        foreach(page ${qmpkit_man} ${qmpkit_definition_man})
            get_filename_component(name \"\${page}\" NAME)
            string(REGEX REPLACE \".*[.]\" \"\" section \"\${name}\")
            set(man \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_MANDIR}/man\${section}\")
            file(MAKE_DIRECTORY \"\${man}\")
            execute_process(COMMAND gzip -9n -c \"\${page}\" OUTPUT_FILE \"\${man}/\${name}.gz\"
                            RESULT_VARIABLE failed)
            if(failed)
                message(FATAL_ERROR \"gzip of \${name} failed\")
            endif()
            message(STATUS \"Installing: \${man}/\${name}.gz\")
        endforeach()"
        COMPONENT runtime)
endif()

# Debian packages (scripts/package): qmpkit, the tool; libqmpkit-dev, the libraries, headers and
# the CMake and pkg-config files.
set(CPACK_PACKAGE_NAME qmpkit)
set(CPACK_PACKAGE_VENDOR "qmpkit")
set(CPACK_PACKAGE_CONTACT "qmpkit maintainers <maintainers@qmpkit.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "run and snapshot QEMU virtual machines over QMP, without libvirt")
set(CPACK_PACKAGE_DESCRIPTION
    "qmpkit starts QEMU virtual machines described in small YAML files, attaches disks to them,\
 snapshots them and resets them to reset points by speaking QMP (the QEMU Machine Protocol) to\
 qemu directly over UNIX sockets: no libvirt, no daemon.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
# Installed under /usr whatever the build's own install prefix is.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime development)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://qmpkit.invalid/")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME qmpkit)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION admin)
# The libraries qmpkit links are found by dpkg-shlibdeps (none when the tool is static:
# QMPKIT_STATIC_DEPS); qemu is what it runs. getent (libc-bin) is essential in Debian.
find_program(QMPKIT_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(QMPKIT_DPKG_SHLIBDEPS)
    set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
    set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "qemu-system-x86, qemu-utils")
elseif(QMPKIT_STATIC_DEPS AND NOT QMPKIT_SANITIZE AND NOT QMPKIT_TSAN AND NOT QMPKIT_FUZZ)
    set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "qemu-system-x86, qemu-utils")
else()
    set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS
        "qemu-system-x86, qemu-utils, libboost-json1.81.0, libspdlog1.10, libfmt9, libyaml-cpp0.7, libstdc++6, libgcc-s1, libc6")
endif()
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libqmpkit-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
    "libboost1.81-dev, libboost-json1.81-dev, libspdlog-dev, libfmt-dev, libyaml-cpp-dev")
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION
    "The static libraries, headers, CMake package (find_package(qmpkit)) and pkg-config file of\
 qmpkit: QMP clients, VM definitions and launcher, snapshots and reset points.")
set(CPACK_COMPONENT_RUNTIME_DISPLAY_NAME "qmpkit tool")
set(CPACK_COMPONENT_DEVELOPMENT_DISPLAY_NAME "qmpkit libraries and headers")
include(CPack)
