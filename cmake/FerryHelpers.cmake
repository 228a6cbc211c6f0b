# Helpers that declare every Ferry library, executable and test the same way.

set(FERRY_WARNINGS -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wcast-align -Wunused
    -Woverloaded-virtual -Wimplicit-fallthrough)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  # GCC 12 reports std::string concatenations as overlapping memcpy at -O2+
  # (GCC bug 105329) and vector inserts as overflows (bug 106199): false positives.
  list(APPEND FERRY_WARNINGS -Wno-restrict -Wno-stringop-overflow)
endif()

if(FERRY_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC's flow analysis under -fsanitize reports std::regex and std::function
  # internals as maybe-uninitialized (false positives, GCC bug 105562).
  list(APPEND FERRY_WARNINGS -Wno-maybe-uninitialized)
endif()

function(ferry_apply_warnings target)
  target_compile_options(${target} PRIVATE ${FERRY_WARNINGS})
  if(FERRY_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# ferry_library(NAME SOURCES a.cc b.cc DEPS x y)
function(ferry_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  ferry_apply_warnings(${name})
endfunction()

# ferry_executable(NAME SOURCES a.cc DEPS x y)
function(ferry_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  ferry_apply_warnings(${name})
endfunction()

# ferry_test(NAME SOURCES a_test.cc DEPS x y [LABELS l] [TIMEOUT s])
# One gtest executable; each test case is registered with CTest separately.
function(ferry_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  ferry_apply_warnings(${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
      ENVIRONMENT "FERRY_BIN_DIR=${PROJECT_BINARY_DIR}/bin;FERRY_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    DISCOVERY_TIMEOUT 60)
endfunction()

set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
