mod common;
mod inspect;
mod normalize;
mod symbolize;
