/**
 * The FUSE wire codec's public entry point: tables, decode/encode, printing, INIT negotiation.
 * Everything other parts of fusetrace need from src/protocol is exported here.
 *
 *   const d = new SessionDecoder();            // learns minor/flags from INIT, pairs replies by unique
 *   const res = d.decode('rx', frameBytes);     // never throws; res.ok, res.errors, res.frame, res.raw
 *   if (res.frame) console.log(formatLine(res.frame));   // rx 42 LOOKUP n1 "foo" pid 1234
 *   encode(res.frame) equals frameBytes; edit res.frame.args[0] and encode() to rewrite a frame.
 */
export {
  KERNEL_MAJOR, KERNEL_MINOR, IN_HEADER_SIZE, OUT_HEADER_SIZE, FUSE_INT_REQ_BIT, FUSE_UNIQUE_RESEND, FUSE_ROOT_ID,
  isInterruptUnique, interruptTarget, INTERRUPT_TARGET_OFFSET, interruptTargetOf, WRITE_HEADERS_SIZE,
  decodeRequest, decodeReply, replyNeedsRequest, decodeFrame, encode, buildRequest, buildReply, buildNotify,
} from './codec.js';
export type {
  Direction, DecodeContext, ReplyContext, DecodeErrorKind, DecodeError, DecodeResult, DecodedFrame, Part, Dirent,
  ExtInfo, RequestSpec, ReplySpec, NotifySpec,
} from './codec.js';
export {
  OPCODE_TABLE, NOTIFY_TABLE, COMPAT_SIZES, OP, Opcode, NO_REPLY_OPCODES, isNoReply, NotifyCode, opcodeInfo, opcodeByName, opcodeName, notifyInfo,
  notifyName, checkTables, assertTablesConsistent,
} from './opcodes.js';
export type { OpcodeInfo, OpcodeName, NotifyInfo, ReplyShape, Tail } from './opcodes.js';
export { ALL_STRUCTS, layout, sizeAt, getPath, decodeStruct, encodeStruct } from './structs.js';
export type { StructDesc, FieldDesc, Fields, Value, PrimType, Leaf } from './structs.js';
export * as structs from './structs.js';
export {
  INIT_FLAGS, INIT_FLAG, OPEN_FLAGS, FOPEN_FLAGS, FATTR_FLAGS, WRITE_FLAGS, READ_FLAGS, RELEASE_FLAGS, GETATTR_FLAGS,
  LK_FLAGS, FSYNC_FLAGS, IOCTL_FLAGS, POLL_FLAGS, POLL_EVENTS, ATTR_FLAGS, SETXATTR_FLAGS, XATTR_FLAGS, RENAME_FLAGS,
  ACCESS_MASK, FALLOC_FLAGS, INVAL_ENTRY_FLAGS, SETUPMAPPING_FLAGS, STATX_MASK, AT_FLAGS, LOCK_TYPES, WHENCE,
  DIRENT_TYPES, MODE_TYPES, OPEN_IN_FLAGS, CUSE_INIT_FLAGS, FORMAT_SETS, formatFlags, formatEnum, formatMode, parseFlags,
} from './flags.js';
export type { FlagSet, EnumSet } from './flags.js';
export { ERRNOS, errnoName, errnoNumber } from './errno.js';
export { formatLine, formatFields, formatValue, briefStruct } from './print.js';
export type { LineOptions } from './print.js';
export { negotiateInit, sessionContext, SessionDecoder } from './init.js';
export type { InitInfo, SessionDecodeResult } from './init.js';

// Fail loudly at start-up, not deep inside a decode, if the tables ever disagree with themselves.
import { assertTablesConsistent as checkAtStartup } from './opcodes.js';
checkAtStartup();
