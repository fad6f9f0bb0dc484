qmpkit_add_test(NAME qmp_qemu_test LABEL integration TIMEOUT 600
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/qemu_test.cpp
    LIBS qmpkit::qmp qmpkit_test_support)
