/**
 * The decoding logic of the generated Wireshark dissector (wireshark.ts prepends the tables it
 * reads: HEADER, STRUCTS, OPCODES, NOTIFIES, FORMATS, ERRNOS, OP, SETXATTR_EXT, IOCTL_RETRY).
 * It mirrors src/protocol/codec.ts: a request is fuse_in_header, the opcode's fixed struct (sized
 * by the negotiated minor; INIT by its length; SETXATTR by FUSE_SETXATTR_EXT), its names, its tail
 * (data or a counted list), then the 7.38 extensions; a reply is fuse_out_header and the layout
 * the answered opcode's row gives. Nothing here names an opcode except those special cases.
 * Lua 5.2 (Wireshark 4.0): numbers are doubles, 64-bit fields come as UInt64/Int64 objects.
 */
export const LUA_RUNTIME = String.raw`
local fuse = Proto("fuse", "FUSE (fusetrace)")
local F = {}
local FIELDS = {}
local function register(key, pf) F[key] = pf; FIELDS[#FIELDS + 1] = pf end

local function sizeof(sname) local l = STRUCTS[sname].layouts return l[#l].size end
local IN_HDR, OUT_HDR, DIRENT, EXT_HDR = sizeof("fuse_in_header"), sizeof("fuse_out_header"), sizeof("fuse_dirent"), sizeof("fuse_ext_header")
local IOVEC = sizeof("fuse_ioctl_iovec")
local HOFF, HSIZE = {}, { u8 = 1, u16 = 2, u32 = 4, i32 = 4, u64 = 8, comm = COMM_LEN }
for _, h in ipairs(HEADER) do HOFF[h.name] = h.offset end

local OPCODE_NAMES = {}
for n, o in pairs(OPCODES) do OPCODE_NAMES[n] = o.name end
local WRITE_ERRNOS = { [0] = "OK" }
for n, name in pairs(ERRNOS) do WRITE_ERRNOS[n] = name end
local DIR_NAMES = { [0] = "kernel to server", [1] = "server to kernel" }

-- The packet header: fuse.<name> for each field; opcode, dir and write_errno print by name.
for _, h in ipairs(HEADER) do
  local abbr, pf = "fuse." .. h.name, nil
  if h.name == "opcode" then pf = ProtoField.uint32(abbr, "opcode", base.DEC, OPCODE_NAMES, nil, h.doc)
  elseif h.name == "dir" then pf = ProtoField.uint8(abbr, "dir", base.DEC, DIR_NAMES, nil, h.doc)
  elseif h.name == "write_errno" then pf = ProtoField.int32(abbr, "write_errno", base.DEC, WRITE_ERRNOS, nil, h.doc)
  elseif h.type == "u8" then pf = ProtoField.uint8(abbr, h.name, base.DEC, nil, nil, h.doc)
  elseif h.type == "u16" then pf = ProtoField.uint16(abbr, h.name, base.DEC, nil, nil, h.doc)
  elseif h.type == "u32" then pf = ProtoField.uint32(abbr, h.name, base.DEC, nil, nil, h.doc)
  elseif h.type == "i32" then pf = ProtoField.int32(abbr, h.name, base.DEC, nil, nil, h.doc)
  elseif h.type == "u64" then pf = ProtoField.uint64(abbr, h.name, base.DEC, nil, nil, h.doc)
  else pf = ProtoField.stringz(abbr, h.name, base.ASCII, h.doc) end
  register(h.name, pf)
end
register("response_in", ProtoField.framenum("fuse.response_in", "response in", base.NONE, frametype.RESPONSE, nil, "the reply to this request"))
register("response_to", ProtoField.framenum("fuse.response_to", "response to", base.NONE, frametype.REQUEST, nil, "the request this reply answers"))
register("time", ProtoField.relative_time("fuse.time", "time", "seconds from the request to this reply"))
register("op", ProtoField.string("fuse.op", "op", base.ASCII, "opcode or notification name"))
register("error", ProtoField.string("fuse.error", "error", base.ASCII, "errno name of the reply (OK, ENOENT, ...)"))
register("name", ProtoField.string("fuse.name", "name", base.UNICODE, "a NUL-terminated name, a dirent name or an xattr name"))
register("data", ProtoField.bytes("fuse.data", "data", base.NONE, "payload"))
register("pad", ProtoField.bytes("fuse.pad", "pad", base.NONE, "dirent padding"))
register("tail", ProtoField.bytes("fuse.tail", "tail", base.NONE, "bytes the layout does not describe"))
register("ext", ProtoField.bytes("fuse.ext", "ext", base.NONE, "request extension payload"))

-- One field per struct leaf, from the newest layout (older ones are prefixes of it).
local function short(name) return (name:gsub("^fuse_", "")) end
for sname, s in pairs(STRUCTS) do
  local last = s.layouts[#s.layouts]
  for _, l in ipairs(last.leaves) do
    local abbr, label = "fuse." .. short(sname) .. "." .. l.p, sname .. "." .. l.p
    local b = (l.fmt == "hex") and base.HEX or base.DEC
    local pf
    if l.t == "u8" then pf = ProtoField.uint8(abbr, label, b)
    elseif l.t == "u16" then pf = ProtoField.uint16(abbr, label, b)
    elseif l.t == "u32" then pf = ProtoField.uint32(abbr, label, b)
    elseif l.t == "i32" then pf = ProtoField.int32(abbr, label, base.DEC)
    elseif l.t == "u64" then pf = ProtoField.uint64(abbr, label, b)
    else pf = ProtoField.int64(abbr, label, base.DEC) end
    register(sname .. "." .. l.p, pf)
  end
end
fuse.fields = FIELDS

local ef_short = ProtoExpert.new("fuse.short", "frame shorter than its layout", expert.group.MALFORMED, expert.severity.WARN)
local ef_trailing = ProtoExpert.new("fuse.trailing", "bytes after the layout", expert.group.MALFORMED, expert.severity.NOTE)
fuse.experts = { ef_short, ef_trailing }

-- ---- values ----

local function tonum(v) if type(v) == "number" then return v end return v:tonumber() end
local TWO32 = 4294967296
local function hasbit(v, bit)
  if bit >= TWO32 then return bit32.band(math.floor(v / TWO32), bit / TWO32) ~= 0 end
  return bit32.band(v % TWO32, bit) ~= 0
end

local function fmtflags(set, v)
  local out, rest = {}, v
  if set.field then
    local f = bit32.band(v % TWO32, set.field.mask)
    local name = string.format("0x%x", f)
    for _, e in ipairs(set.field.values) do if e[2] == f then name = e[1] end end
    out[#out + 1] = name
    rest = rest - f
  end
  for _, e in ipairs(set.bits) do
    if hasbit(rest, e[2]) then out[#out + 1] = e[1]; rest = rest - e[2] end
  end
  if rest ~= 0 then out[#out + 1] = string.format("0x%x", rest) end
  if #out == 0 then return "0" end
  return table.concat(out, "|")
end

local function fmtmode(m)
  local t = bit32.band(m, 61440)
  local perm = string.format("%04o", bit32.band(m, 4095))
  if t == 0 then return perm end
  for _, e in ipairs(FORMATS.modeType.values) do if e[2] == t then return e[1] .. " " .. perm end end
  return string.format("type%o %s", t / 4096, perm)
end

local function errname(e)
  e = math.abs(e)
  if e == 0 then return "OK" end
  return ERRNOS[e] or ("E" .. e)
end

-- Text for a value with a format (print.ts formatValue), or nil when the number says it all.
local function fmtvalue(fmt, v)
  if fmt == nil or fmt == "unique" or fmt == "hex" then return nil end
  if fmt == "nodeid" then return "n" .. string.format("%.0f", v) end
  if fmt == "octal" then return string.format("0%o", v) end
  if fmt == "mode" then return fmtmode(v) end
  if fmt == "errno" then return errname(v) end
  local set = FORMATS[fmt]
  if set == nil then return nil end
  if set.kind == "flags" then return fmtflags(set, v) end
  for _, e in ipairs(set.values) do if e[2] == v then return e[1] end end
  return nil
end

-- A value as the one-line printer writes it; 64-bit values exactly, from their UInt64 objects.
local function vtext(fmt, v, raw)
  if fmt == "hex" then
    if raw ~= nil then return "0x" .. (raw:tohex():gsub("^0+(.)", "%1")) end
    return string.format("0x%x", v)
  end
  local t = fmtvalue(fmt, v)
  if t then return t end
  if raw ~= nil then return tostring(raw) end
  return string.format("%.0f", v)
end

local FMT = {}
for sname, s in pairs(STRUCTS) do
  FMT[sname] = {}
  for _, l in ipairs(s.layouts[#s.layouts].leaves) do FMT[sname][l.p] = l.fmt end
end

-- A struct's summary from its brief items (print.ts briefStruct): zero flag words left out.
local function brief(sname, values)
  local s, out = STRUCTS[sname], {}
  for _, b in ipairs(s.brief or {}) do
    local path, label, when = b[1], b[2], b[3]
    local v = values[path]
    local shown = v ~= nil and not (when and not hasbit(values[when[1]] or 0, when[2]))
    local fmt = FMT[sname][path]
    local set = fmt and FORMATS[fmt]
    local quiet = v == 0 and ((set and set.kind == "flags" and not set.field) or fmt == "hex" or path == "backing_id" or path == "flags2")
    if shown and not quiet and fmt ~= "init2" then
      local text
      -- INIT flags print as one 64-bit set: flags | flags2 << 32 (fuse.h 7.36, FUSE_INIT_EXT).
      if fmt == "init" then text = fmtflags(FORMATS.init, v + (values.flags2 or 0) * TWO32)
      else text = vtext(fmt, v, values["#" .. path]) end
      out[#out + 1] = (label ~= "" and (label .. " ") or "") .. text
    end
  end
  return table.concat(out, " ")
end

local function push(list, text) if text ~= nil and text ~= "" then list[#list + 1] = text end end

-- ---- structs ----

local function layoutAt(sname, minor)
  local s, chosen = STRUCTS[sname], nil
  for _, l in ipairs(s.layouts) do if l.since <= minor then chosen = l end end
  return chosen or s.layouts[1]
end

local function readleaf(tvb, off, t, size)
  local r = tvb(off, size)
  if t == "u64" then return r:le_uint64() elseif t == "i64" then return r:le_int64()
  elseif t == "i32" then return r:le_int() else return r:le_uint() end
end

-- Adds struct sname at off (at most avail bytes) under tree; returns its values (numbers) and the bytes covered.
local function dstruct(tvb, tree, off, sname, avail, minor, size, title)
  local l = layoutAt(sname, minor)
  size = size or l.size
  local have = math.min(size, avail, tvb:len() - off)
  local values, covered = {}, 0
  if have <= 0 then return values, 0 end
  local st = tree:add(fuse, tvb(off, have), title or sname)
  for _, leaf in ipairs(l.leaves) do
    if leaf.o + leaf.s > have then break end
    local pf = F[sname .. "." .. leaf.p]
    local n = leaf.n or 1
    local w = leaf.s / n
    for i = 0, n - 1 do
      local at = off + leaf.o + i * w
      local item = st:add_le(pf, tvb(at, w))
      if i == 0 then
        local raw = readleaf(tvb, at, leaf.t, w)
        local v = tonum(raw)
        values[leaf.p] = v
        if leaf.s == 8 then values["#" .. leaf.p] = raw end
        local text = fmtvalue(leaf.fmt, v)
        if text then item:append_text(" (" .. text .. ")") end
      end
    end
    covered = leaf.o + leaf.s
  end
  if have < size then st:add_proto_expert_info(ef_short, sname .. ": need " .. size .. " bytes, have " .. have) end
  return values, covered
end

-- A NUL-terminated name at pos before stop; returns the position after it.
local function dname(tvb, tree, pos, stop, label)
  local n = 0
  while pos + n < stop and tvb(pos + n, 1):uint() ~= 0 do n = n + 1 end
  if n > 0 then
    tree:add(F.name, tvb(pos, n)):prepend_text(label .. " ")
  end
  local after = pos + n + ((pos + n < stop) and 1 or 0)
  return after, (n > 0) and tvb(pos, n):string() or ""
end

local function dbytes(tvb, tree, key, pos, stop)
  if stop > pos then tree:add(F[key], tvb(pos, stop - pos)) end
  return stop
end

local function dtail(tvb, tree, t, arg, pos, stop, minor)
  if t.kind == "data" then return dbytes(tvb, tree, "data", pos, stop) end
  if t.kind == "list" then
    local isz = layoutAt(t.item, minor).size
    for i = 1, (arg.count or 0) do
      if stop - pos < isz then break end
      local _, c = dstruct(tvb, tree, pos, t.item, isz, minor, isz, t.item .. "[" .. (i - 1) .. "]")
      pos = pos + c
    end
  end
  return pos
end

local function trailing(tvb, tree, pos, stop)
  if stop > pos then tree:add(F.tail, tvb(pos, stop - pos)):add_proto_expert_info(ef_trailing) end
end

-- ---- requests ----

local function dextensions(tvb, tree, pos, stop, minor)
  while stop - pos >= EXT_HDR do
    local size = tvb(pos, 4):le_uint()
    if size < EXT_HDR or size > stop - pos or size % 8 ~= 0 then break end
    local _, c = dstruct(tvb, tree, pos, "fuse_ext_header", EXT_HDR, minor)
    dbytes(tvb, tree, "ext", pos + c, pos + size)
    pos = pos + size
  end
  trailing(tvb, tree, pos, stop)
end

local function dissect_request(tvb, tree, h, pinfo)
  local minor = h.minor
  local hdr = dstruct(tvb, tree, 0, "fuse_in_header", tvb:len(), minor)
  local stop = math.min(hdr.len or tvb:len(), tvb:len())
  local info = OPCODES[hdr.opcode or -1]
  local name = info and info.name or ("OPCODE-" .. tostring(hdr.opcode))
  tree:add(F.op, name):set_generated()
  -- The one-line printer's request line (print.ts formatLine): name n<nodeid> "names" brief N bytes pid P.
  local line = { name, "n" .. tostring(hdr["#nodeid"] or 0) }
  local argstop = stop
  local extlen = (minor >= 38) and (hdr.total_extlen or 0) * 8 or 0
  if extlen > 0 and extlen <= stop - IN_HDR then argstop = stop - extlen end
  local pos = IN_HDR
  if not info then
    trailing(tvb, tree, pos, argstop)
  else
    local arg = {}
    if info.req then
      local size, aminor = nil, minor
      if hdr.opcode == OP.INIT or hdr.opcode == OP.CUSE_INIT then
        -- INIT is decoded by its length (8 bytes before 7.6, 16 until 7.35, 64 since 7.36).
        size = math.min(argstop - pos, layoutAt(info.req, KERNEL_MINOR).size)
        aminor = KERNEL_MINOR
      elseif hdr.opcode == OP.SETXATTR then
        size = hasbit(h.init_flags, SETXATTR_EXT) and 16 or 8
      end
      local c
      arg, c = dstruct(tvb, tree, pos, info.req, argstop - pos, aminor, size)
      pos = pos + c
    end
    local names = {}
    for i = 1, info.names do
      if pos >= argstop then break end
      local n
      pos, n = dname(tvb, tree, pos, argstop, "name[" .. (i - 1) .. "]")
      names[#names + 1] = '"' .. n .. '"'
    end
    push(line, table.concat(names, " "))
    if info.req then push(line, brief(info.req, arg)) end
    local before = pos
    pos = dtail(tvb, tree, info.tail, arg, pos, argstop, minor)
    -- The payload's size from the header's len: a frame cut for the pcapng packet limit still says its whole size.
    local full = (hdr.len or stop) - (argstop < stop and extlen or 0)
    if info.tail.kind == "data" and math.max(full, pos) > before then push(line, (math.max(full, pos) - before) .. " bytes") end
    trailing(tvb, tree, pos, argstop)
  end
  if argstop < stop then dextensions(tvb, tree, argstop, stop, minor) end
  push(line, "pid " .. (hdr.pid or 0))
  return table.concat(line, " ")
end

-- ---- replies and notifications ----

local function ddirents(tvb, tree, pos, stop, plus, minor)
  local entsize = plus and sizeof("fuse_entry_out") or 0
  local fixed = entsize + DIRENT
  local count = 0
  while stop - pos > 0 do
    if stop - pos < fixed then trailing(tvb, tree, pos, stop) return count end
    if plus then pos = pos + select(2, dstruct(tvb, tree, pos, "fuse_entry_out", entsize, minor, entsize)) end
    local d, c = dstruct(tvb, tree, pos, "fuse_dirent", DIRENT, minor)
    pos = pos + c
    local namelen = d.namelen or 0
    if namelen > stop - pos then trailing(tvb, tree, pos, stop) return count end
    if namelen > 0 then tree:add(F.name, tvb(pos, namelen)) end
    pos = pos + namelen
    local pad = math.min((8 - (fixed + namelen) % 8) % 8, stop - pos)
    pos = dbytes(tvb, tree, "pad", pos, pos + pad)
    count = count + 1
  end
  return count
end

local function dnotify(tvb, tree, pos, stop, code, minor)
  local info = NOTIFIES[code]
  local name = info and info.name or ("NOTIFY-" .. code)
  tree:add(F.op, name):set_generated()
  if not info then dbytes(tvb, tree, "data", pos, stop) return name end
  local arg = {}
  if info.struct then
    local c
    arg, c = dstruct(tvb, tree, pos, info.struct, stop - pos, minor)
    pos = pos + c
  end
  for i = 1, info.names do pos = dname(tvb, tree, pos, stop, "name[" .. (i - 1) .. "]") end
  pos = dtail(tvb, tree, info.tail, arg, pos, stop, minor)
  trailing(tvb, tree, pos, stop)
  return name
end

-- The reply's body by the answered opcode's layout; returns the one-line printer's summary items.
local function dreply_body(tvb, tree, pos, stop, full, info, h, minor)
  local shape, line = info.reply, {}
  if shape.kind == "structs" then
    for _, sname in ipairs(shape.structs) do
      local init = h.opcode == OP.INIT
      local size = init and math.min(stop - pos, layoutAt(sname, KERNEL_MINOR).size) or nil
      local v, c = dstruct(tvb, tree, pos, sname, stop - pos, init and KERNEL_MINOR or minor, size)
      push(line, table.concat({ STRUCTS[sname].label or "", brief(sname, v) }, " "):gsub("^ ", ""))
      pos = pos + c
    end
  elseif shape.kind == "data" then
    if shape.text and stop > pos then push(line, '"' .. tvb(pos, stop - pos):string() .. '"')
    else push(line, (math.max(full, stop) - pos) .. " bytes") end
    pos = dbytes(tvb, tree, "data", pos, stop)
  elseif shape.kind == "xattr" then
    if h.xattr_size_query == 1 then
      local v, c = dstruct(tvb, tree, pos, "fuse_getxattr_out", stop - pos, minor)
      push(line, "xattr " .. brief("fuse_getxattr_out", v))
      pos = pos + c
    elseif shape.names then
      local names = {}
      while pos < stop do
        local n
        pos, n = dname(tvb, tree, pos, stop, "xattr")
        names[#names + 1] = '"' .. n .. '"'
      end
      push(line, table.concat(names, " "))
    else
      push(line, (stop - pos) .. " bytes")
      pos = dbytes(tvb, tree, "data", pos, stop)
    end
  elseif shape.kind == "dirents" then
    push(line, ddirents(tvb, tree, pos, stop, shape.plus, minor) .. " entries")
    pos = stop
  elseif shape.kind == "ioctl" then
    local out, c = dstruct(tvb, tree, pos, "fuse_ioctl_out", stop - pos, minor)
    push(line, "ioctl " .. brief("fuse_ioctl_out", out))
    pos = pos + c
    if out.flags and hasbit(out.flags, IOCTL_RETRY) then
      for _ = 1, (out.in_iovs or 0) + (out.out_iovs or 0) do
        if stop - pos < IOVEC then break end
        pos = pos + select(2, dstruct(tvb, tree, pos, "fuse_ioctl_iovec", IOVEC, minor))
      end
    else
      pos = dbytes(tvb, tree, "data", pos, stop)
    end
  elseif shape.kind == "cuse" then
    pos = pos + select(2, dstruct(tvb, tree, pos, "cuse_init_out", stop - pos, minor))
    pos = dbytes(tvb, tree, "data", pos, stop)
  end
  trailing(tvb, tree, pos, stop)
  return table.concat(line, " ")
end

local function dissect_reply(tvb, tree, h, pinfo)
  local minor = h.minor
  local hdr = dstruct(tvb, tree, 0, "fuse_out_header", tvb:len(), minor)
  local stop = math.min(hdr.len or tvb:len(), tvb:len())
  if h.unique == 0 then return dnotify(tvb, tree, OUT_HDR, stop, hdr.error or 0, minor) end
  local err = hdr.error or 0
  tree:add(F.error, errname(err)):set_generated()
  local info = OPCODES[h.opcode]
  local name = info and info.name or "REPLY"
  tree:add(F.op, name):set_generated()
  local summary = ""
  if err ~= 0 or not info then
    if stop > OUT_HDR then dbytes(tvb, tree, (err ~= 0) and "tail" or "data", OUT_HDR, stop) end
  else
    summary = dreply_body(tvb, tree, OUT_HDR, stop, hdr.len or stop, info, h, minor)
  end
  return name .. " " .. errname(err) .. (summary ~= "" and (" " .. summary) or "")
end

-- ---- the packet header and the entry point ----

local function dheader(tvb, tree)
  local h = {}
  local ht = tree:add(fuse, tvb(0, HEADER_LEN), "fusetrace header")
  for _, f in ipairs(HEADER) do
    local size = HSIZE[f.type]
    local r = tvb(f.offset, size)
    if f.type == "comm" then ht:add(F[f.name], r); h[f.name] = r:stringz()
    else
      ht:add_le(F[f.name], r)
      local raw = readleaf(tvb, f.offset, f.type, size)
      h[f.name] = tonum(raw)
      h["#" .. f.name] = raw
    end
  end
  if h.minor == 0 then h.minor = KERNEL_MINOR end
  return h
end

function fuse.dissector(tvb, pinfo, tree)
  if tvb:len() < HEADER_LEN then return 0 end
  pinfo.cols.protocol = "FUSE"
  local root = tree:add(fuse, tvb(), "FUSE")
  local h = dheader(tvb, root)
  if h.version > HEADER_VERSION or h.hdr_len > tvb:len() then
    root:add(F.tail, tvb(HEADER_LEN)):append_text(" (header version " .. h.version .. " is newer than this dissector)")
    return tvb:len()
  end
  if h.partner > 0 then
    root:add(h.dir == 0 and F.response_in or F.response_to, tvb(HOFF.partner, 4), h.partner):set_generated()
  end
  if h.dir == 1 and h.partner > 0 then
    local ns = h.time_ns
    root:add(F.time, tvb(HOFF.time_ns, 8), NSTime.new(math.floor(ns / 1e9), ns % 1e9)):set_generated()
  end
  local frame = tvb(h.hdr_len):tvb()
  local text
  if h.dir == 0 then text = dissect_request(frame, root, h, pinfo) else text = dissect_reply(frame, root, h, pinfo) end
  -- The unique from its UInt64: a resent request's (FUSE_UNIQUE_RESEND, bit 63) is beyond a double's precision.
  local summary = string.format("%s %s %s", h.dir == 0 and "rx" or "tx", tostring(h["#unique"]), text)
  if h.dir == 1 and h.partner > 0 then summary = summary .. string.format(" %.2fms", h.time_ns / 1e6) end
  if h.write_errno ~= 0 then summary = summary .. " [write " .. errname(h.write_errno) .. "]" end
  pinfo.cols.info = summary
  root:append_text(": " .. summary)
  return tvb:len()
end

DissectorTable.get("wtap_encap"):add(wtap_encaps.USER0, fuse)
`;
