// Who is logged in, for every page: {me, logout}.
import { createContext, useContext } from "./view.js";

export const Session = createContext({ me: null, logout: () => {} });

export const useSession = () => useContext(Session);

export const canLead = (me) => me?.role === "lead" || me?.role === "admin";
