# cmake -DREADME=<README.md> -DEXAMPLE=<examples/readme_tour.cpp> -P check_readme_snippets.cmake
#
# Checks that every ```cpp block of README.md is quoted verbatim from the
# compiled example: the block is preceded by the line
#   <!-- quoted from examples/readme_tour.cpp: NAME -->
# and equals the example's lines between "// [readme:NAME]" and
# "// [readme:end]", without their common indentation. So the README's code
# compiles (CI builds the example) and runs (a test runs it). Fails naming the
# block otherwise. The text is handled as strings, never as CMake lists, since
# C++ is full of ';' and '['.

cmake_minimum_required(VERSION 3.25)

file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
set(marker "<!-- quoted from examples/readme_tour.cpp: ")
set(errors "")
set(checked 0)

# Every ```cpp fence must follow a marker.
string(REGEX MATCHALL "```cpp\n" fences "${readme}")
list(LENGTH fences fence_count)

set(rest "${readme}")
while(TRUE)
  string(FIND "${rest}" "${marker}" at)
  if(at EQUAL -1)
    break()
  endif()
  string(LENGTH "${marker}" marker_len)
  math(EXPR name_at "${at} + ${marker_len}")
  string(SUBSTRING "${rest}" ${name_at} -1 rest)
  string(FIND "${rest}" " -->\n```cpp\n" end_of_name)
  if(end_of_name EQUAL -1)
    string(APPEND errors "a marker is not followed by a ```cpp block on the next line\n")
    break()
  endif()
  string(SUBSTRING "${rest}" 0 ${end_of_name} name)
  math(EXPR block_at "${end_of_name} + 12")  # " -->\n```cpp\n"
  string(SUBSTRING "${rest}" ${block_at} -1 rest)
  string(FIND "${rest}" "\n```" block_end)
  string(SUBSTRING "${rest}" 0 ${block_end} block)
  math(EXPR checked "${checked} + 1")

  # The example's region NAME.
  string(FIND "${example}" "// [readme:${name}]\n" region_at)
  if(region_at EQUAL -1)
    string(APPEND errors "block '${name}': no region '// [readme:${name}]' in ${EXAMPLE}\n")
    continue()
  endif()
  string(LENGTH "// [readme:${name}]\n" open_len)
  math(EXPR region_at "${region_at} + ${open_len}")
  string(SUBSTRING "${example}" ${region_at} -1 region)
  string(FIND "${region}" "// [readme:end]" region_end)
  string(SUBSTRING "${region}" 0 ${region_end} region)
  # Drop the end marker's own indentation and the region's last newline.
  string(REGEX REPLACE "\n *$" "" region "${region}")
  # Remove the first line's indentation from every line.
  string(REGEX MATCH "^ +" indent "${region}")
  if(NOT indent STREQUAL "")
    string(LENGTH "${indent}" indent_len)
    string(SUBSTRING "${region}" ${indent_len} -1 region)
    string(REPLACE "\n${indent}" "\n" region "${region}")
  endif()
  if(NOT block STREQUAL region)
    string(APPEND errors
           "block '${name}' of ${README} differs from its region in ${EXAMPLE}.\n"
           "--- README.md:\n${block}\n--- ${EXAMPLE}:\n${region}\n---\n")
  endif()
endwhile()

if(NOT checked EQUAL fence_count)
  string(APPEND errors
         "${README} has ${fence_count} ```cpp blocks but only ${checked} are marked "
         "'${marker}NAME -->': every C++ block must be quoted from the compiled example\n")
endif()
if(NOT errors STREQUAL "")
  message(FATAL_ERROR "${errors}")
endif()
message(STATUS "${checked} C++ blocks of README.md are quoted from ${EXAMPLE}")
