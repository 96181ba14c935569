# kv-pool-compare (run by the sweep experiments/psa/pool.ini) writes its CSV through the output
# helper: a symbolic link at -o is refused before any work and left as it was; a normal run
# leaves the CSV whole (header and one row per epsilon) and no temporary file beside it.
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
file(WRITE ${DIR}/target.txt "keep\n")
file(CREATE_LINK ${DIR}/target.txt ${DIR}/link.csv SYMBOLIC)
execute_process(COMMAND ${TOOL} ${QKV} -e 0.9,0.95 -p 2 -B 1 -o ${DIR}/link.csv
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(READ ${DIR}/target.txt kept)
if(rc EQUAL 0 OR NOT err MATCHES "link.csv.*symbolic link" OR NOT kept STREQUAL "keep\n"
   OR NOT IS_SYMLINK ${DIR}/link.csv)
  message(FATAL_ERROR "symbolic link at -o: rc ${rc}: ${err}")
endif()
execute_process(COMMAND ${TOOL} ${QKV} -e 0.9,0.95 -p 2 -B 1 -o ${DIR}/pool.csv
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kv-pool-compare failed (${rc}): ${err}")
endif()
file(STRINGS ${DIR}/pool.csv lines)
list(LENGTH lines n)
list(GET lines 0 head)
if(NOT n EQUAL 3 OR NOT head MATCHES "^epsilon,batch,steps,layers,unified_blocks")
  message(FATAL_ERROR "pool.csv: ${n} lines, header ${head}")
endif()
file(GLOB left ${DIR}/pool.csv.tmp*)
if(left)
  message(FATAL_ERROR "temporary files left: ${left}")
endif()
