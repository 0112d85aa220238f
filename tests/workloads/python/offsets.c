/* Prints the CPython struct offsets stackwatch's Python reader uses, as
 * `name=value` lines, compiled against one version's headers:
 *
 *   cc -I$PREFIX/include/python3.X -I$PREFIX/include/python3.X/internal offsets.c
 *
 * The test `python::tests::layout_matches_the_headers` builds it for every
 * installed CPython and compares with profiler-user/src/python/layout.rs. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <structmember.h>
#if PY_VERSION_HEX < 0x03090000
#include <internal/pycore_pystate.h>
#else
#include <internal/pycore_interp.h>
#include <internal/pycore_runtime.h>
#endif
#if PY_VERSION_HEX >= 0x030b0000
#include <internal/pycore_frame.h>
#else
#include <frameobject.h>
#endif

#define P(name, value) printf("%s=%ld\n", name, (long)(value))

int main(void) {
    P("runtime_interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
#if PY_VERSION_HEX < 0x030c0000
    P("runtime_tss_key", offsetof(_PyRuntimeState, gilstate.autoTSSkey) + offsetof(Py_tss_t, _key));
#else
    P("runtime_tss_key", offsetof(_PyRuntimeState, autoTSSkey) + offsetof(Py_tss_t, _key));
#endif
    P("interp_next", offsetof(PyInterpreterState, next));
#if PY_VERSION_HEX < 0x030b0000
    P("interp_threads_head", offsetof(PyInterpreterState, tstate_head));
#else
    P("interp_threads_head", offsetof(PyInterpreterState, threads.head));
#endif
    P("tstate_next", offsetof(PyThreadState, next));
    P("tstate_interp", offsetof(PyThreadState, interp));
#if PY_VERSION_HEX < 0x030b0000
    P("tstate_frame", offsetof(PyThreadState, frame));
#elif PY_VERSION_HEX < 0x030d0000
    P("tstate_frame", offsetof(PyThreadState, cframe));
    P("cframe_current_frame", offsetof(_PyCFrame, current_frame));
#else
    P("tstate_frame", offsetof(PyThreadState, current_frame));
#endif
    P("tstate_thread_id", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030b0000
    P("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
#endif
#if PY_VERSION_HEX < 0x030b0000
    P("frame_code", offsetof(PyFrameObject, f_code));
    P("frame_previous", offsetof(PyFrameObject, f_back));
    P("frame_lasti", offsetof(PyFrameObject, f_lasti));
    P("frame_struct_end", offsetof(PyFrameObject, f_lasti) + sizeof(int));
#else
#if PY_VERSION_HEX < 0x030d0000
    P("frame_code", offsetof(_PyInterpreterFrame, f_code));
    P("frame_lasti", offsetof(_PyInterpreterFrame, prev_instr));
#else
    P("frame_code", offsetof(_PyInterpreterFrame, f_executable));
    P("frame_lasti", offsetof(_PyInterpreterFrame, instr_ptr));
#endif
    P("frame_previous", offsetof(_PyInterpreterFrame, previous));
#if PY_VERSION_HEX < 0x030c0000
    P("frame_entry", offsetof(_PyInterpreterFrame, is_entry));
#else
    P("frame_entry", offsetof(_PyInterpreterFrame, owner));
    P("owner_cstack", FRAME_OWNED_BY_CSTACK);
#endif
    P("frame_struct_end", offsetof(_PyInterpreterFrame, localsplus));
#endif
    P("code_filename", offsetof(PyCodeObject, co_filename));
    P("code_name", offsetof(PyCodeObject, co_name));
#if PY_VERSION_HEX >= 0x030b0000
    P("code_qualname", offsetof(PyCodeObject, co_qualname));
    P("code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
#else
    P("code_code", offsetof(PyCodeObject, co_code));
#endif
    P("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
#if PY_VERSION_HEX < 0x030a0000
    P("code_linetable", offsetof(PyCodeObject, co_lnotab));
#else
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
#endif
    /* Fields of the words that identify a code object (its checksum). */
    P("code_consts", offsetof(PyCodeObject, co_consts));
    P("code_names", offsetof(PyCodeObject, co_names));
    P("code_argcount", offsetof(PyCodeObject, co_argcount));
    P("code_stacksize", offsetof(PyCodeObject, co_stacksize));
#if PY_VERSION_HEX < 0x030b0000
    P("code_varnames", offsetof(PyCodeObject, co_varnames));
#else
    P("code_localsplusnames", offsetof(PyCodeObject, co_localsplusnames));
    P("code_nfreevars", offsetof(PyCodeObject, co_nfreevars));
#endif
#if PY_VERSION_HEX >= 0x030c0000
    P("code_version", offsetof(PyCodeObject, co_version));
#endif
    P("object_type", offsetof(PyObject, ob_type));
    P("var_size", offsetof(PyVarObject, ob_size));
    P("bytes_data", offsetof(PyBytesObject, ob_sval));
    P("unicode_state", offsetof(PyASCIIObject, state));
    P("unicode_length", offsetof(PyASCIIObject, length));
    P("unicode_ascii_data", sizeof(PyASCIIObject));
    P("unicode_compact_data", sizeof(PyCompactUnicodeObject));
    P("type_members", offsetof(PyTypeObject, tp_members));
    P("member_def_size", sizeof(PyMemberDef));
    P("member_def_offset", offsetof(PyMemberDef, offset));
#if PY_VERSION_HEX >= 0x030d0000
    P("debug_runtime_interpreters_head", offsetof(_Py_DebugOffsets, runtime_state.interpreters_head));
    P("debug_interp_next", offsetof(_Py_DebugOffsets, interpreter_state.next));
    P("debug_interp_threads_head", offsetof(_Py_DebugOffsets, interpreter_state.threads_head));
    P("debug_tstate_next", offsetof(_Py_DebugOffsets, thread_state.next));
    P("debug_tstate_interp", offsetof(_Py_DebugOffsets, thread_state.interp));
    P("debug_tstate_current_frame", offsetof(_Py_DebugOffsets, thread_state.current_frame));
    P("debug_tstate_thread_id", offsetof(_Py_DebugOffsets, thread_state.thread_id));
    P("debug_tstate_native_thread_id", offsetof(_Py_DebugOffsets, thread_state.native_thread_id));
    P("debug_frame_previous", offsetof(_Py_DebugOffsets, interpreter_frame.previous));
    P("debug_frame_executable", offsetof(_Py_DebugOffsets, interpreter_frame.executable));
    P("debug_frame_instr_ptr", offsetof(_Py_DebugOffsets, interpreter_frame.instr_ptr));
    P("debug_frame_owner", offsetof(_Py_DebugOffsets, interpreter_frame.owner));
    P("debug_code_filename", offsetof(_Py_DebugOffsets, code_object.filename));
    P("debug_code_name", offsetof(_Py_DebugOffsets, code_object.name));
    P("debug_code_qualname", offsetof(_Py_DebugOffsets, code_object.qualname));
    P("debug_code_linetable", offsetof(_Py_DebugOffsets, code_object.linetable));
    P("debug_code_firstlineno", offsetof(_Py_DebugOffsets, code_object.firstlineno));
    P("debug_code_adaptive", offsetof(_Py_DebugOffsets, code_object.co_code_adaptive));
    P("debug_object_type", offsetof(_Py_DebugOffsets, pyobject.ob_type));
#endif
    return 0;
}
