# cmake -P script: install attn from BUILD_DIR into a scratch prefix, build
# tests/consumer against it twice (attn::attn without BLAS; attn::nn), run
# both results.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGV}")
  endif()
endfunction()

run_step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
# attn::attn alone: BLAS cannot be found, so a dependency on it would fail.
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build
         -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release
         -DCMAKE_DISABLE_FIND_PACKAGE_BLAS=ON
         -DEXAMPLE_SOURCE=${SOURCE_DIR}/examples/basic.cc)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run_step(${WORK_DIR}/build/consumer)
# attn::nn: the checkpoint example (writes, loads and generates).
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build-nn
         -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release
         -DNN_SOURCE=${SOURCE_DIR}/examples/llama_checkpoint.cc)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build-nn)
run_step(${WORK_DIR}/build-nn/consumer_nn)
