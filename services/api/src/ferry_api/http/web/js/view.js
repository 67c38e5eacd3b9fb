// Preact + htm in one place: every module renders with `html`, which escapes whatever it is given.
import { h, render, createContext, Fragment } from "preact";
import {
  useState, useEffect, useMemo, useRef, useCallback, useContext, useReducer,
} from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);
export {
  render, createContext, Fragment,
  useState, useEffect, useMemo, useRef, useCallback, useContext, useReducer,
};
