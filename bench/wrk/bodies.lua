-- POST the bodies of a file (one JSON document per line) to one path, each body once: thread n
-- of t sends lines n, n+t, n+2t, ...; past the end it repeats the last one (the harness gives
-- more lines than a run sends, and counts what wrk saw refused).
-- Usage: wrk -s bench/wrk/bodies.lua URL -- FILE PATH THREADS
local bodies, position, step, path = {}, 0, 1, "/"
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  path, step = args[2], tonumber(args[3])
  position = (id or 0) + 1
end

function request()
  local body = bodies[position] or bodies[#bodies]
  position = position + step
  return wrk.format("POST", path, {["Content-Type"] = "application/fhir+json"}, body)
end
