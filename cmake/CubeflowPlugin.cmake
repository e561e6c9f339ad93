# cubeflow_add_plugin(NAME SOURCES src... [LIBS lib...])
# Builds a cubeflow plugin: a MODULE library named NAME.so (no "lib" prefix), hidden
# visibility, linked to cubeflow::core, placed where the cubeflow binary looks for plugins.
function(cubeflow_add_plugin name)
  cmake_parse_arguments(ARG "NO_INSTALL" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden
                        VISIBILITY_INLINES_HIDDEN ON)
  if(TARGET cubeflow::core)
    target_link_libraries(${name} PRIVATE cubeflow::core ${ARG_LIBS})
  else()
    target_link_libraries(${name} PRIVATE cubeflow_core ${ARG_LIBS})
  endif()
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
  endif()
endfunction()
