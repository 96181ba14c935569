# kvlab_target_defaults(<target>): warnings, sanitizers and include conventions for project code.
# Third-party code is never built with these flags.
function(kvlab_target_defaults target)
  # POSIX 2008 (fsync, open_memstream, strcasecmp, clock_gettime) on top of strict C11.
  target_compile_definitions(${target} PRIVATE _POSIX_C_SOURCE=200809L)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter>
    $<$<AND:$<COMPILE_LANGUAGE:C>,$<C_COMPILER_ID:GNU>>:-Wno-format-truncation>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall --Werror=cross-execution-space-call>)
  if(KVLAB_WERROR)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:C>:-Werror>
      $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
  endif()
  set(san "")
  if(KVLAB_SANITIZE_ADDRESS)
    list(APPEND san address)
  endif()
  if(KVLAB_SANITIZE_UNDEFINED)
    list(APPEND san undefined)
  endif()
  if(san)
    list(JOIN san "," san_list)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:C>:-fsanitize=${san_list} -fno-omit-frame-pointer -fno-sanitize-recover=all>)
    target_link_options(${target} PRIVATE -fsanitize=${san_list})
  endif()
endfunction()

# kvlab_add_library(<name> <sources...>): a static library of project code with the defaults.
function(kvlab_add_library name)
  add_library(${name} STATIC ${ARGN})
  kvlab_target_defaults(${name})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# kvlab_add_tool(<name> <sources...>): an executable placed in build/bin.
function(kvlab_add_tool name)
  add_executable(${name} ${ARGN})
  kvlab_target_defaults(${name})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
endfunction()

# kvlab_add_test(<name> SOURCES <src...> [LIBS <lib...>] [LABELS <label...>] [ARGS <arg...>])
# One executable per test file; it runs all its cases, or one when given its name.
# Exit code 77 means "skipped" (a GPU test without a GPU, a test whose data is absent).
function(kvlab_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  kvlab_target_defaults(${name})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "KVLAB_SOURCE_DIR=${PROJECT_SOURCE_DIR};KVLAB_BUILD_DIR=${PROJECT_BINARY_DIR}")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()
