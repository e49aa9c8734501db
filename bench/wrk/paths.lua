-- GET the paths of a file (one per line), in turn; each wrk thread starts at its own offset.
-- Usage: wrk -s bench/wrk/paths.lua URL -- FILE
local paths, position = {}, 0
local counter = 0

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  position = (offset or 0) * 7919 % #paths
end

function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position])
end
