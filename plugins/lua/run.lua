-- kiln's runner for a Lua run whose end is checked (the job key
-- expect_end; worker/include/kiln/plugin.h, KILN_PLUGIN_ENDS), given to lua
-- with -e (the script lua then runs, /dev/null, does nothing):
--
--   lua5.4 -eRUN.LUA /dev/null /work/main.lua ARGS...
--
-- The agent's token is taken before any of the program's code runs and
-- held in a local of this chunk. The program may not read locals or
-- upvalues (the debug library keeps only traceback and getinfo) nor load C
-- code (package.loadlib and the C searchers are gone: a C library could
-- open a full debug library again). The program's chunk is loaded with a
-- call appended on a line of its own, after its last line; the proof is
-- written when that call is made from the chunk itself (its function
-- object and that line checked), or when the chunk's last line calls
-- os.exit with success (luaunit's tests end so: os.exit(lu.LuaUnit.run())),
-- directly or through luaunit's wrapper of it.
-- os.exit from anywhere else, an error or a `return` before the end: no
-- proof.
local file = arg[1]
local getinfo, traceback, real_exit = debug.getinfo, debug.traceback, os.exit
local open, remove = io.open, os.remove
local token
do
  local f = open('/tmp/.kiln-end/token', 'rb')
  if f then
    token = f:read('a')
    f:close()
    remove('/tmp/.kiln-end/token')
  end
end
local f = assert(open(file, 'rb'))
local src = f:read('a')
f:close()
local lines, last = 1, 1
for i = 1, #src do
  if src:sub(i, i) == '\n' then
    lines = lines + 1
  end
end
do
  local n = 1
  for line in (src .. '\n'):gmatch('(.-)\n') do
    if line:find('%S') then
      last = n
    end
    n = n + 1
  end
end
local sentinel = lines + 1
local chunk, reached
local function prove()
  if token == nil then
    return
  end
  local out = open('/tmp/.kiln-end/proof', 'wb')
  if out then
    out:write(token)
    out:close()
  end
  token = nil
end
local function from_chunk(line)
  local i = getinfo(3, 'fl')
  return i ~= nil and i.func == chunk and i.currentline == line
end
function __kiln_reached_end()
  if from_chunk(sentinel) then
    reached = true
  end
end
-- os.exit called by the chunk's last line, directly or through luaunit's
-- own wrapper of os.exit (which refuses an exit while its tests run): that
-- function and no other between, found by the line luaunit defines it on
-- (luaunit's help and version also exit 0, and a program could make
-- luaunit call them)
local LUAUNIT = '@/usr/share/lua/5.4/luaunit.lua'
local function luaunit_exit_line()
  local lf, n = open(LUAUNIT:sub(2), 'rb'), 0
  if lf == nil then
    return nil
  end
  for line in lf:lines() do
    n = n + 1
    if line:find('^os%.exit = function') then
      lf:close()
      return n
    end
  end
  lf:close()
  return nil
end
local function exit_from_last_line()
  local i = getinfo(3, 'fSl')
  if i ~= nil and i.source == LUAUNIT and i.what == 'Lua' and i.linedefined == luaunit_exit_line() then
    i = getinfo(4, 'fl')
  end
  return i ~= nil and i.func == chunk and i.currentline == last
end
os.exit = function(code, close)
  if (code == nil or code == true or code == 0) and exit_from_last_line() then
    prove()
  end
  return real_exit(code, close)
end
-- text chunks only: crafted bytecode can read the interpreter's memory
local real_load, real_loadfile = load, loadfile
-- (and no chunk of the program's may name itself luaunit's file)
load = function(c, name, _, env)
  if type(name) == 'string' and name:sub(1, 1) == '@' then
    name = '=' .. name:sub(2)
  end
  return real_load(c, name, 't', env)
end
loadfile = function(name, _, env)
  return real_loadfile(name, 't', env)
end
dofile = function(name)
  return assert(real_loadfile(name, 't'))()
end
debug = { traceback = traceback, getinfo = getinfo }
package.loaded.debug = debug
package.loadlib = nil
package.cpath = ''
package.searchers[3], package.searchers[4] = nil, nil
arg = { [0] = file, table.unpack(arg, 2) }
chunk = real_load(src .. '\n__kiln_reached_end()', '@' .. file, 't')
if chunk == nil then -- a program that ends with a return statement: no call can follow it
  token = nil
  chunk = assert(real_load(src, '@' .. file, 't'))
end
chunk(table.unpack(arg, 1))
if reached then
  prove()
end
