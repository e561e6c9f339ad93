# cubeflow_add_plugin(NAME SOURCES plugin.cpp [NODES node.cpp...] [LIBS lib...] [NO_INSTALL])
#
# Builds a cubeflow plugin: a MODULE library NAME.so (no "lib" prefix), hidden visibility,
# linked to cubeflow::core, placed where the cubeflow binary looks for plugins.
#
# With NODES, the node code is also a static library, cubeflow_NAME_nodes (linked into the
# plugin), so that tests and tools link the code they test instead of compiling it again:
#   SOURCES  the entry point (plugin.cpp with CUBEFLOW_PLUGIN)
#   NODES    one file per node type, plus their helpers
#   LIBS     what the nodes link (public for the node library)
function(cubeflow_add_plugin name)
  cmake_parse_arguments(ARG "NO_INSTALL" "" "SOURCES;NODES;LIBS" ${ARGN})
  if(TARGET cubeflow::core)
    set(_core cubeflow::core)
  else()
    set(_core cubeflow_core)
  endif()
  set(_libs ${ARG_LIBS})
  if(ARG_NODES)
    add_library(cubeflow_${name}_nodes STATIC ${ARG_NODES})
    target_include_directories(cubeflow_${name}_nodes PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(cubeflow_${name}_nodes PUBLIC ${_core} ${ARG_LIBS})
    set_target_properties(cubeflow_${name}_nodes PROPERTIES CXX_VISIBILITY_PRESET hidden
                          VISIBILITY_INLINES_HIDDEN ON POSITION_INDEPENDENT_CODE ON)
    set(_libs cubeflow_${name}_nodes)
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden
                        VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${name} PRIVATE ${_core} ${_libs})
  if(NOT CUBEFLOW_SANITIZE)
    # Unresolved symbols are link errors, not run-time surprises.
    target_link_options(${name} PRIVATE -Wl,--no-undefined)
  endif()
  if(DEFINED CUBEFLOW_PLUGIN_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CUBEFLOW_PLUGIN_OUTPUT_DIR})
  endif()
  if(NOT ARG_NO_INSTALL AND DEFINED CUBEFLOW_PLUGIN_INSTALL_DIR)
    # Installed plugins live in <prefix>/lib/cubeflow/plugins; their libraries in <prefix>/lib.
    set_target_properties(${name} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${name} LIBRARY DESTINATION ${CUBEFLOW_PLUGIN_INSTALL_DIR})
    set_property(GLOBAL APPEND PROPERTY CUBEFLOW_IN_TREE_PLUGINS ${name})
  endif()
endfunction()
