# Turns a text file into a C string constant: -DIN=file -DOUT=file.c -DNAME=symbol
file(READ ${IN} content)
string(REPLACE "\\" "\\\\" content "${content}")
string(REPLACE "\"" "\\\"" content "${content}")
string(REPLACE "\n" "\\n\"\n\"" content "${content}")
file(WRITE ${OUT}.tmp "/* generated from ${IN}; do not edit */\nconst char ${NAME}[] =\n\"${content}\";\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
